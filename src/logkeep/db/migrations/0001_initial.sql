-- logkeep initial schema: sources, users, partitioned log entries, rollups, alerts, audit.

CREATE TYPE log_level AS ENUM ('DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL');
CREATE TYPE user_role AS ENUM ('admin', 'analyst', 'viewer');

-- Keeps updated_at current on every UPDATE, whoever issues it.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE log_sources (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Lower-case, at most 63 characters, never all digits ("12" always means id 12).
    name           text NOT NULL UNIQUE
                   CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$' AND name !~ '^[0-9]+$'),
    description    text NOT NULL DEFAULT '',
    source_type    text NOT NULL,
    format_type    text NOT NULL,
    parsing_rules  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(parsing_rules) = 'object'),
    configuration  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(configuration) = 'object'),
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER log_sources_touch BEFORE UPDATE ON log_sources
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE users (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{1,64}$'),
    email          text NOT NULL,
    password_hash  text NOT NULL,
    role           user_role NOT NULL DEFAULT 'viewer',
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login     timestamptz
);
-- Emails are unique regardless of case: Admin@x and admin@x are one mailbox.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Log entries. No foreign key to log_sources: a foreign key fires a trigger per row on
-- the COPY path, and sources are deactivated, never deleted.
CREATE SEQUENCE log_entries_id_seq AS bigint;
CREATE TABLE log_entries (
    id           bigint NOT NULL DEFAULT nextval('log_entries_id_seq'),
    source_id    integer NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    level        log_level NOT NULL DEFAULT 'INFO',
    message      text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    -- The primary key carries the source column and the partition key, so the table can be
    -- distributed by source later. It is also the (source, timestamp) btree that serves
    -- "newest entries of one source" and keyset pagination (id breaks timestamp ties):
    -- one index doing two jobs instead of two indexes costing every insert.
    PRIMARY KEY (source_id, "timestamp", id)
) PARTITION BY RANGE ("timestamp");
ALTER SEQUENCE log_entries_id_seq OWNED BY log_entries.id;

-- BRIN on time: entries arrive roughly in time order, so block ranges map to narrow time
-- ranges. Tiny (kilobytes per gigabyte) and nearly free to maintain under COPY; it serves
-- time-window scans that span all sources.
CREATE INDEX log_entries_timestamp_brin ON log_entries USING brin ("timestamp")
    WITH (pages_per_range = 32);

-- GIN on metadata with jsonb_path_ops: serves containment filters (metadata @> '{...}'),
-- the only operator the API exposes on metadata. Smaller and faster to update than the
-- default jsonb_ops, which also indexes keys for ?, ?| and ?& that we do not offer.
-- It is the costliest index under COPY (bench/index_costs.py: 0.56x the bare table's
-- rows/s at the default 4 MB pending list, 0.68x at 32 MB), so new entries collect in a
-- 32 MB pending list and reach the index in bulk.
CREATE INDEX log_entries_metadata_gin ON log_entries USING gin (metadata jsonb_path_ops)
    WITH (gin_pending_list_limit = 32768);

-- Rows whose day has no partition yet land here; `logkeep db maintain` reports them and
-- moves them into their day's partition when it creates it.
CREATE TABLE log_entries_default PARTITION OF log_entries DEFAULT;

-- Daily partition names follow log_entries_pYYYYMMDD; bounds are UTC days.
CREATE FUNCTION log_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'log_entries_p' || to_char(day, 'YYYYMMDD')
$$;

-- Creates the partition for `day` if missing. Rows of that day already sitting in the
-- DEFAULT partition would make CREATE ... PARTITION OF fail, so they are moved into the
-- new table before it is attached, in this one transaction. Returns the rows moved, or
-- NULL when the partition already existed.
CREATE FUNCTION ensure_log_partition(day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := log_partition_name(day);
    lower_bound timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    upper_bound timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
    moved bigint := 0;
BEGIN
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

-- Drops the partition of `day` (retention): a catalog operation, not a DELETE.
CREATE FUNCTION drop_log_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := log_partition_name(day);
BEGIN
    IF to_regclass(format('%I', part_name)) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', part_name);
    RETURN true;
END;
$$;

-- Per-minute counts by source and level, kept by the ingest path in the same transaction
-- as the entries, so aggregates never scan log_entries.
CREATE TABLE log_metrics (
    source_id  integer NOT NULL,
    bucket     timestamptz NOT NULL CHECK (date_trunc('minute', bucket) = bucket),
    level      log_level NOT NULL,
    count      bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (source_id, bucket, level)
);
-- Range scans over all sources ("the last 24 hours") read this instead of the key.
CREATE INDEX log_metrics_bucket ON log_metrics USING brin (bucket);

CREATE TABLE alert_rules (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    description     text NOT NULL DEFAULT '',
    source_id       integer REFERENCES log_sources (id),
    min_level       log_level NOT NULL DEFAULT 'ERROR',
    query           text NOT NULL DEFAULT '',
    threshold       integer NOT NULL CHECK (threshold > 0),
    window_seconds  integer NOT NULL CHECK (window_seconds > 0),
    is_active       boolean NOT NULL DEFAULT true,
    created_by      integer REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER alert_rules_touch BEFORE UPDATE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor_id     integer REFERENCES users (id),
    action       text NOT NULL,
    target_type  text NOT NULL DEFAULT '',
    target_id    text NOT NULL DEFAULT '',
    client_addr  inet,
    details      jsonb NOT NULL DEFAULT '{}'
);
-- "What happened recently" and "what did this user do" are the two questions asked.
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, occurred_at);

-- Named seed runs, so `logkeep db seed` loads each data set once.
CREATE TABLE seed_runs (
    name        text PRIMARY KEY,
    rows        bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
