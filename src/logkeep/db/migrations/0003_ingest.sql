-- Ingest (issue 3): the ledger that makes redelivered stream entries harmless, and the
-- dead-letter table for what could not become an entry.

-- One row per ingest stream entry (one request's accepted events), written in the same
-- transaction as the entries' COPY. A worker claims an entry by inserting its row first:
-- a redelivered or concurrently claimed entry conflicts and is skipped, so every event
-- is stored exactly once without a unique index on log_entries.
CREATE TABLE ingest_ledger (
    entry_id      text PRIMARY KEY,  -- the Redis Stream entry id, "<ms>-<seq>"
    events        integer NOT NULL CHECK (events >= 0),
    committed_at  timestamptz NOT NULL DEFAULT now()
);
-- Pruning by age ("ledger rows older than the longest possible redelivery").
CREATE INDEX ingest_ledger_committed_at ON ingest_ledger USING brin (committed_at);

-- Lines that could not be stored as entries (a syslog line with invalid text, a corrupt
-- stream entry), with the reason: never dropped without a trace.
CREATE TABLE ingest_dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source_id    integer,
    entry_id     text NOT NULL DEFAULT '',
    reason       text NOT NULL,
    raw          text NOT NULL
);
CREATE INDEX ingest_dead_letters_received_at ON ingest_dead_letters (received_at);
