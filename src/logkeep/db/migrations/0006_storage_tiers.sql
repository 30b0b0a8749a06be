-- Storage tiers (issue 13): a hot tier that is cheap to write (log_entries) and a
-- compressed tier (log_chunks) that background compaction fills with each closed time
-- slice of each source, deleting the hot rows in the same transaction.
-- docs/storage.md has the measurements behind every choice below.

-- The hot tier keeps only what ingest, live reads and compaction need: its primary key
-- (source, time, id) and BRIN on time. Full-text and metadata GIN indexes made COPY 3.8x
-- and 1.8x slower; the hot tier holds minutes of data, which a search reads whole (with
-- ILIKE narrowing words and substrings first), and the compressed tier has its own
-- per-chunk index.
DROP INDEX log_entries_message_fulltext;
DROP INDEX log_entries_metadata_gin;

-- A chunk: up to 1,000 consecutive events of one source, as zstd-compressed columns
-- (domain/chunks.py), never spanning a UTC day, partitioned by day like log_entries so
-- that retention drops both days at once. Payload and Bloom filter are stored as they
-- are (EXTERNAL: already compressed, or random bits), out of line, so a scan of chunk
-- headers does not read them.
CREATE SEQUENCE log_chunks_id_seq AS bigint;
CREATE TABLE log_chunks (
    id            bigint NOT NULL DEFAULT nextval('log_chunks_id_seq'),
    source_id     integer NOT NULL,
    min_ts        timestamptz NOT NULL,
    max_ts        timestamptz NOT NULL,
    events        integer NOT NULL CHECK (events > 0),
    -- Bit n set when the chunk holds an entry of the n-th log_level (DEBUG = bit 0).
    level_mask    smallint NOT NULL,
    level_counts  integer[] NOT NULL,
    -- The columns' size before compression (`logkeep stats storage`).
    raw_bytes     bigint NOT NULL,
    bloom         bytea NOT NULL,
    payload       bytea NOT NULL,
    compacted_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (max_ts >= min_ts),
    -- Keyed like log_entries: source column and partition key in the primary key.
    PRIMARY KEY (source_id, min_ts, id)
) PARTITION BY RANGE (min_ts);
ALTER SEQUENCE log_chunks_id_seq OWNED BY log_chunks.id;
ALTER TABLE log_chunks ALTER COLUMN bloom SET STORAGE EXTERNAL;
ALTER TABLE log_chunks ALTER COLUMN payload SET STORAGE EXTERNAL;
-- Newest chunks of a source first (pages, context), and of every source (one entry per
-- chunk: a few kilobytes a million events).
CREATE INDEX log_chunks_newest ON log_chunks (source_id, max_ts);
CREATE INDEX log_chunks_max_ts ON log_chunks (max_ts);

-- Whether a chunk's Bloom filter may hold every term whose two hashes are given
-- (domain/chunks.py term_hashes): probes h1 + i*h2 for i in 0..3, modulo the filter's
-- bits, numbered as get_bit numbers them.
CREATE FUNCTION log_chunk_may_hold(bloom bytea, h1 bigint[], h2 bigint[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM unnest(h1, h2) AS t(a, b), generate_series(0, 3) AS i
        WHERE get_bit(bloom, ((a + i * b) % (octet_length(bloom)::bigint * 8))::integer) = 0)
$$;

CREATE FUNCTION log_chunk_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'log_chunks_p' || to_char(day, 'YYYYMMDD')
$$;

-- A day's partitions of both tiers; returns the hot rows moved out of DEFAULT, or NULL
-- when the day's log_entries partition existed already (as before).
CREATE OR REPLACE FUNCTION ensure_log_partition(day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := log_partition_name(day);
    chunk_name text := log_chunk_partition_name(day);
    lower_bound timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    upper_bound timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
    moved bigint := 0;
BEGIN
    IF to_regclass(format('%I', chunk_name)) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF log_chunks FOR VALUES FROM (%L) TO (%L)',
                       chunk_name, lower_bound, upper_bound);
    END IF;
    IF to_regclass(format('%I', part_name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Hold off new rows for DEFAULT until the day is attached, or a row of that day
    -- committed after the move below would make ATTACH fail.
    LOCK TABLE log_entries_default IN EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM log_entries_default
               WHERE "timestamp" >= lower_bound AND "timestamp" < upper_bound) THEN
        EXECUTE format('CREATE TABLE %I (LIKE log_entries INCLUDING DEFAULTS)', part_name);
        EXECUTE format(
            'WITH moved AS (DELETE FROM log_entries_default
                            WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING *)
             INSERT INTO %I SELECT * FROM moved', part_name)
            USING lower_bound, upper_bound;
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE log_entries ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part_name, lower_bound, upper_bound);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF log_entries FOR VALUES FROM (%L) TO (%L)',
                       part_name, lower_bound, upper_bound);
    END IF;
    RETURN moved;
END;
$$;

-- Retention: both tiers' partitions of `day`, catalog operations, never a DELETE.
CREATE OR REPLACE FUNCTION drop_log_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := log_partition_name(day);
    chunk_name text := log_chunk_partition_name(day);
    dropped boolean := false;
BEGIN
    IF to_regclass(format('%I', chunk_name)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', chunk_name);
        dropped := true;
    END IF;
    IF to_regclass(format('%I', part_name)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', part_name);
        dropped := true;
    END IF;
    RETURN dropped;
END;
$$;

-- CREATE OR REPLACE keeps owner and grants but resets the rest: as in 0004 again.
ALTER FUNCTION ensure_log_partition(date) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION drop_log_partition(date) SECURITY DEFINER SET search_path = public, pg_temp;

-- The compressed tier's partitions for the days that have hot partitions already.
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT to_date(substring(c.relname FROM 14), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'log_entries'::regclass AND c.relname ~ '^log_entries_p[0-9]{8}$'
    LOOP
        PERFORM ensure_log_partition(day);
    END LOOP;
END;
$$;

-- Per-source retention, shorter than the global one (NULL: the global one). Chunks are
-- per source, so expiring one source's old events rewrites or deletes only its chunks.
ALTER TABLE log_sources ADD COLUMN retention_days integer CHECK (retention_days > 0);
