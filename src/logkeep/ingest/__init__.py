"""Ingest: the stream producer, the worker and the syslog receiver."""
