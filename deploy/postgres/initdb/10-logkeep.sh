#!/bin/sh
# First-start initialisation of logkeep's PostgreSQL, in every profile: the official
# image runs the files of /docker-entrypoint-initdb.d once, on an empty data directory,
# as the postgres user with PGPASSWORD set. (The schema is not made here: the `migrate`
# service applies logkeep's migrations, then the profile's seed.)
#
# Three roles, none a superuser (logkeep_readonly: SELECT on log data, granted by
# `logkeep db roles`, for analysts' own SQL):
#   logkeep      (LOGKEEP_DB_PASSWORD) owns the database and every object the migrations
#                create; only the one-shot `migrate` service logs in as it.
#   logkeep_app  (LOGKEEP_APP_DB_PASSWORD) reads and writes rows and nothing more: the
#                API, workers and syslog receiver. Partition DDL reaches it through two
#                SECURITY DEFINER functions (migration 0004).
# Where postgresql.conf preloads pg_stat_statements (prod), the extension is created too.
set -eu

check_password() {
    # $1: variable name, $2: value. Passwords go into connection URLs unescaped.
    case "$2" in
        "") echo "$1 must be set (see .env.example)" >&2; exit 1 ;;
        *[!A-Za-z0-9._~-]*)
            echo "$1 may hold only letters, digits and . _ ~ - (it goes into a URL)" >&2
            exit 1 ;;
    esac
    if [ "${#2}" -lt 16 ]; then
        echo "$1 must be at least 16 characters (openssl rand -hex 24)" >&2
        exit 1
    fi
}
check_password LOGKEEP_DB_PASSWORD "${LOGKEEP_DB_PASSWORD:-}"
check_password LOGKEEP_APP_DB_PASSWORD "${LOGKEEP_APP_DB_PASSWORD:-}"

# psql substitutes :'name' as a quoted literal: a password never becomes SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-postgres}" \
    --set=owner_password="$LOGKEEP_DB_PASSWORD" \
    --set=app_password="$LOGKEEP_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE logkeep LOGIN PASSWORD :'owner_password';
CREATE ROLE logkeep_app LOGIN PASSWORD :'app_password';
-- For analysts' own SQL: grant membership to their login roles (no login of its own).
CREATE ROLE logkeep_readonly NOLOGIN;
-- pg_monitor lets `logkeep doctor` (run with the owner's URL) see every connection and
-- pg_stat_statements. Not the app role: it would read other sessions' statements.
GRANT pg_monitor TO logkeep;
CREATE DATABASE logkeep OWNER logkeep;
-- Only logkeep's roles (and superusers) may connect; PUBLIC may by default.
REVOKE ALL ON DATABASE logkeep FROM PUBLIC;
GRANT CONNECT ON DATABASE logkeep TO logkeep_app, logkeep_readonly;
\connect logkeep
-- No default privileges on tables: after each migration the `migrate` service runs
-- `logkeep db roles`, which grants the app role, table by table, only the statements
-- logkeep issues (log entries and the audit trail: insert and read, never update or
-- delete). (PostgreSQL 15 already denies PUBLIC the right to create objects in public.)
SELECT current_setting('shared_preload_libraries') ~ 'pg_stat_statements' AS preloaded \gset
\if :preloaded
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
\endif
SQL
