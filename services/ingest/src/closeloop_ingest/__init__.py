"""Ingest: accepts survey responses, validates and deduplicates them, persists them and publishes
`response.received.v1` through the outbox."""
