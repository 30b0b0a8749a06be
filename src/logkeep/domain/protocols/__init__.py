"""The shippers' own protocols, pure: each decoder turns a request body into the JSON
events `/api/v1/ingest` takes (source, message, timestamp, level, metadata, event_id),
so everything below it (sources, limits, dedup, rate limits, the stream, the worker)
is the one ingest path. See docs/shippers.md for the mapping of every field."""
