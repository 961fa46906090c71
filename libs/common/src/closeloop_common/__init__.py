"""Closeloop's shared library: what every service needs once and only once.

Event contracts (`events`), settings, Kafka plumbing (`kafka`), the transactional outbox and the
inbox (`outbox`, `inbox`), database helpers (`db`), the web app shell (`web`), the service runtime
(`runtime`), structured logging, metrics and the injectable clock.
"""
