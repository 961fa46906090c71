"""The orchestrator's integration tests that share `support.py` (a package of its own: each service's test helpers must have a unique import name)."""
