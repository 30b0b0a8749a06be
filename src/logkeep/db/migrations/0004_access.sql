-- Access control (issue 6): who may read which sources, API keys for shippers, saved
-- searches, and least privilege for the application's own database role.

-- Sources a user may read. Admins read every source and need no rows here.
CREATE TABLE user_source_grants (
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_id   integer NOT NULL REFERENCES log_sources (id),
    granted_by  integer REFERENCES users (id),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source_id)
);

-- API keys for shippers and automation. Only a SHA-256 of the key is stored: keys are
-- 256 random bits, so a fast hash is as safe as a slow one and costs nothing per request.
CREATE TABLE api_keys (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix        text NOT NULL,                 -- the key's first characters, to recognise it
    key_hash      bytea NOT NULL UNIQUE,
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read']),
    all_sources   boolean NOT NULL DEFAULT false,
    created_by    integer REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE api_key_sources (
    key_id     integer NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    source_id  integer NOT NULL REFERENCES log_sources (id),
    PRIMARY KEY (key_id, source_id)
);

-- Analysts' saved searches: a name and the search's query parameters.
CREATE TABLE saved_searches (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    params      jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

-- Partition DDL needs the owner of log_entries. The application connects as a role with
-- DML only (see docs/deploy.md), so these two functions run with their owner's rights;
-- the fixed search_path keeps a caller's objects out of them.
-- Functions are executable by PUBLIC by default: these only by their owner and the roles
-- `logkeep db roles` grants them to.
ALTER FUNCTION ensure_log_partition(date) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION drop_log_partition(date) SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION ensure_log_partition(date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION drop_log_partition(date) FROM PUBLIC;
