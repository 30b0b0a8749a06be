-- Named queries. Each block starts with "-- name: <name>"; parameters are positional.

-- name: insert_log_entry
INSERT INTO log_entries (source_id, "timestamp", level, message, metadata)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, ingested_at;

-- name: allocate_entry_ids
-- Ids for a COPY batch, taken up front so the writer knows them (COPY returns none);
-- now() is the transaction's start, the same value ingested_at defaults to.
SELECT now() AS ingested_at,
       array(SELECT nextval('log_entries_id_seq') FROM generate_series(1, $1::integer)) AS ids;

-- name: add_minute_counts
-- Rollups for a batch: parallel arrays of (source, minute, level, count).
INSERT INTO log_metrics (source_id, bucket, level, count)
SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::log_level[], $4::bigint[])
ON CONFLICT (source_id, bucket, level) DO UPDATE SET count = log_metrics.count + EXCLUDED.count;

-- name: recent_logs
-- Newest entries, walking each source's (source_id, timestamp) key backwards, so the cost
-- is sources x limit index reads, never a scan of the table.
SELECT e.id, e.source_id, s.name AS source, e."timestamp", e.level, e.message, e.metadata,
       e.ingested_at
FROM log_sources s
CROSS JOIN LATERAL (
    SELECT le.id, le.source_id, le."timestamp", le.level, le.message, le.metadata,
           le.ingested_at
    FROM log_entries le
    WHERE le.source_id = s.id AND ($2::log_level IS NULL OR le.level = $2::log_level)
    ORDER BY le."timestamp" DESC, le.id DESC
    LIMIT $3
) e
WHERE ($1::integer[] IS NULL OR s.id = ANY($1::integer[]))
ORDER BY e."timestamp" DESC, e.id DESC
LIMIT $3;

-- name: error_summary
-- Per source over a window, from the per-minute rollups (never a scan of log_entries).
SELECT s.id AS source_id, s.name AS source,
       coalesce(sum(m.count), 0)::bigint AS total,
       coalesce(sum(m.count) FILTER (WHERE m.level = 'ERROR'), 0)::bigint AS errors,
       coalesce(sum(m.count) FILTER (WHERE m.level = 'FATAL'), 0)::bigint AS fatal,
       max(m.bucket) FILTER (WHERE m.level IN ('ERROR', 'FATAL')) AS last_error_minute
FROM log_sources s
JOIN log_metrics m ON m.source_id = s.id AND m.bucket >= $1
GROUP BY s.id, s.name
ORDER BY coalesce(sum(m.count) FILTER (WHERE m.level IN ('ERROR', 'FATAL')), 0) DESC, s.name;

-- name: insert_source
INSERT INTO log_sources (name, description, source_type, format_type, parsing_rules,
                         configuration, is_active)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: upsert_source
-- Seeding: create the source, or leave an existing one untouched.
INSERT INTO log_sources (name, description, source_type, format_type, parsing_rules,
                         configuration)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO NOTHING;

-- name: source_by_id
SELECT * FROM log_sources WHERE id = $1;

-- name: source_by_name
SELECT * FROM log_sources WHERE name = $1;

-- name: list_sources
SELECT * FROM log_sources WHERE is_active OR NOT $1::boolean ORDER BY name;

-- name: update_source_rules
UPDATE log_sources SET parsing_rules = $2, format_type = coalesce($3, format_type)
WHERE id = $1
RETURNING *;

-- name: update_source
-- A source's format, rules and description in one statement; NULL keeps a value.
UPDATE log_sources SET format_type = coalesce($2, format_type),
                       parsing_rules = coalesce($3, parsing_rules),
                       description = coalesce($4, description)
WHERE id = $1
RETURNING *;

-- name: set_source_active
UPDATE log_sources SET is_active = $2 WHERE id = $1 RETURNING *;

-- name: insert_user
INSERT INTO users (username, email, password_hash, role)
VALUES ($1, $2, $3, $4)
RETURNING id, username, email, role, is_active, created_at, updated_at, last_login;

-- name: insert_user_if_missing
INSERT INTO users (username, email, password_hash, role)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: user_by_username
SELECT * FROM users WHERE username = $1;

-- name: user_by_id
SELECT id, username, email, role, is_active, created_at, updated_at, last_login
FROM users WHERE id = $1;

-- name: list_users
SELECT id, username, email, role, is_active, created_at, updated_at, last_login
FROM users ORDER BY username;

-- name: record_login
UPDATE users SET last_login = now() WHERE id = $1 RETURNING last_login;

-- name: update_password_hash
UPDATE users SET password_hash = $2 WHERE id = $1;

-- name: ensure_partition
SELECT ensure_log_partition($1::date);

-- name: drop_partition
SELECT drop_log_partition($1::date);

-- name: list_partitions
SELECT c.relname AS name
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'log_entries'::regclass AND c.relname ~ '^log_entries_p[0-9]{8}$'
ORDER BY c.relname;

-- name: default_partition_rows
SELECT count(*) AS rows, min("timestamp") AS oldest, max("timestamp") AS newest
FROM log_entries_default;

-- name: delete_old_rollups
-- log_metrics is small (one row per source, level and minute) and unpartitioned.
DELETE FROM log_metrics WHERE bucket < $1;

-- name: seed_run_exists
SELECT rows FROM seed_runs WHERE name = $1;

-- name: record_seed_run
INSERT INTO seed_runs (name, rows) VALUES ($1, $2);

-- name: claim_stream_entries
-- Ledger rows for stream entries about to be committed; returns only the entries no other
-- transaction has committed (or is committing: the insert waits for it, then skips).
INSERT INTO ingest_ledger (entry_id, events)
SELECT * FROM unnest($1::text[], $2::integer[])
ON CONFLICT (entry_id) DO NOTHING
RETURNING entry_id;

-- name: committed_stream_entries
-- Which of these stream entries are committed (durable requests wait for theirs).
SELECT entry_id FROM ingest_ledger WHERE entry_id = ANY($1::text[]);

-- name: add_dead_letters
INSERT INTO ingest_dead_letters (source_id, entry_id, reason, raw)
SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[]);

-- name: prune_ingest_ledger
DELETE FROM ingest_ledger WHERE committed_at < now() - make_interval(days => $1::integer);

-- name: source_rules_by_id
SELECT id, name, is_active, format_type, parsing_rules, configuration
FROM log_sources WHERE id = $1;

-- name: source_rules_by_name
SELECT id, name, is_active, format_type, parsing_rules, configuration
FROM log_sources WHERE name = $1;

-- name: user_access
-- A user as a caller: role, whether active, and the sources granted (for non-admins).
SELECT u.id, u.username, u.role::text AS role, u.is_active,
       array(SELECT g.source_id FROM user_source_grants g WHERE g.user_id = u.id
             ORDER BY g.source_id) AS sources
FROM users u WHERE u.id = $1;

-- name: key_access
-- A live key as a caller, recording its use in the same round trip: last_used_at to the
-- minute, so one write per key per minute, not one per request.
WITH k AS (
    SELECT id, name, scopes, all_sources, last_used_at
    FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
), touched AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM k)
      AND ((SELECT last_used_at FROM k) IS NULL
           OR (SELECT last_used_at FROM k) < now() - interval '1 minute')
)
SELECT k.id, k.name, k.scopes, k.all_sources,
       array(SELECT s.source_id FROM api_key_sources s WHERE s.key_id = k.id
             ORDER BY s.source_id) AS sources
FROM k;

-- name: insert_key
INSERT INTO api_keys (name, prefix, key_hash, scopes, all_sources, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, prefix, scopes, all_sources, created_at, last_used_at, revoked_at;

-- name: insert_key_sources
INSERT INTO api_key_sources (key_id, source_id) SELECT $1, unnest($2::integer[]);

-- name: list_keys
SELECT k.id, k.name, k.prefix, k.scopes, k.all_sources, k.created_at, k.last_used_at,
       k.revoked_at,
       array(SELECT s.source_id FROM api_key_sources s WHERE s.key_id = k.id
             ORDER BY s.source_id) AS sources
FROM api_keys k ORDER BY k.id;

-- name: revoke_key
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id;

-- name: grant_sources
INSERT INTO user_source_grants (user_id, source_id, granted_by)
SELECT $1, unnest($2::integer[]), $3
ON CONFLICT DO NOTHING;

-- name: revoke_sources
DELETE FROM user_source_grants WHERE user_id = $1 AND source_id = ANY($2::integer[]);

-- name: set_user_active
UPDATE users SET is_active = $2 WHERE id = $1 RETURNING id;

-- name: set_user_role
UPDATE users SET role = $2::user_role WHERE id = $1 RETURNING id;

-- name: insert_audit
INSERT INTO audit_log (actor_id, action, target_type, target_id, client_addr, details)
VALUES ($1, $2, $3, $4, $5::inet, $6);

-- name: insert_saved_search
INSERT INTO saved_searches (owner_id, name, params) VALUES ($1, $2, $3)
RETURNING id, name, params, created_at;

-- name: list_saved_searches
SELECT id, name, params, created_at FROM saved_searches WHERE owner_id = $1 ORDER BY name;

-- name: delete_saved_search
DELETE FROM saved_searches WHERE id = $1 AND owner_id = $2 RETURNING id;

-- name: entry_by_key
-- One entry by its primary key (source_id, "timestamp", id): an index probe in one
-- partition. The explorer's permalinks carry all three; an id alone would scan every day.
SELECT le.id, le.source_id, s.name AS source, le."timestamp", le.level, le.message,
       le.metadata, le.ingested_at
FROM log_entries le
JOIN log_sources s ON s.id = le.source_id
WHERE le.source_id = $1 AND le."timestamp" = $2 AND le.id = $3;

-- name: entries_before
-- Context: the entries of one source just before a position, newest first, by walking
-- its primary key backwards from ($2, $3). The plain bounds on "timestamp" ($2 and the
-- retention floor $4) let the planner prune the partitions outside them.
SELECT le.id, le.source_id, s.name AS source, le."timestamp", le.level, le.message,
       le.metadata, le.ingested_at
FROM log_entries le
JOIN log_sources s ON s.id = le.source_id
WHERE le.source_id = $1 AND (le."timestamp", le.id) < ($2, $3)
  AND le."timestamp" <= $2 AND le."timestamp" >= $4
ORDER BY le."timestamp" DESC, le.id DESC
LIMIT $5;

-- name: entries_after
-- Context: the entries of one source just after a position, oldest first ($4: the
-- latest instant an entry may have).
SELECT le.id, le.source_id, s.name AS source, le."timestamp", le.level, le.message,
       le.metadata, le.ingested_at
FROM log_entries le
JOIN log_sources s ON s.id = le.source_id
WHERE le.source_id = $1 AND (le."timestamp", le.id) > ($2, $3)
  AND le."timestamp" >= $2 AND le."timestamp" <= $4
ORDER BY le."timestamp", le.id
LIMIT $5;

-- name: user_grants
-- The sources granted to a user (the explorer's administration shows them).
SELECT source_id FROM user_source_grants WHERE user_id = $1 ORDER BY source_id;

-- name: create_source_on_first_use
-- A source a shipper names for the first time (ingest/first_use.py); nothing when it
-- exists already (another request created it meanwhile).
INSERT INTO log_sources (name, description, source_type, format_type)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING id;

-- name: grant_key_source
INSERT INTO api_key_sources (key_id, source_id) VALUES ($1, $2) ON CONFLICT DO NOTHING;

-- name: key_source_granted
SELECT EXISTS (SELECT 1 FROM api_key_sources WHERE key_id = $1 AND source_id = $2);
