"""Developer tools: a local SMTP sink, the process stack behind `make run` and the e2e tests, and
the demo feed. Not deployed."""
