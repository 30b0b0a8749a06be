-- Alerting (issue 12): rules of four kinds evaluated on a schedule, a state per rule and
-- group with the history of its transitions, reusable notification channels, an outbox
-- of notifications (written in the evaluation's transaction, delivered after it), and
-- silences.

-- A rule keeps its search as the (name, value) pairs of GET /api/v1/logs, so that it
-- means exactly what that search means; sources apart, because access control reads
-- them. An empty source_ids is every source the rule's owner may read.
ALTER TABLE alert_rules
    ADD COLUMN kind text NOT NULL DEFAULT 'threshold'
        CHECK (kind IN ('threshold', 'ratio', 'absence', 'new_pattern')),
    ADD COLUMN op text NOT NULL DEFAULT '>=' CHECK (op IN ('>', '>=', '<', '<=')),
    ADD COLUMN source_ids integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN search jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(search) = 'array'),
    -- What one kind needs: a ratio's denominator and minimum volume, an absence's
    -- expected groups and look-back, a new pattern's learning period.
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    ADD COLUMN group_by text,
    ADD COLUMN labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    ADD COLUMN interval_seconds integer NOT NULL DEFAULT 60
        CHECK (interval_seconds BETWEEN 5 AND 86400),
    ADD COLUMN for_seconds integer NOT NULL DEFAULT 0 CHECK (for_seconds BETWEEN 0 AND 604800),
    ADD COLUMN keep_firing_for_seconds integer NOT NULL DEFAULT 0
        CHECK (keep_firing_for_seconds BETWEEN 0 AND 604800),
    ADD COLUMN repeat_interval_seconds integer NOT NULL DEFAULT 14400
        CHECK (repeat_interval_seconds BETWEEN 60 AND 604800);
-- A ratio's threshold is a fraction; counts stay whole numbers (checked by the API).
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_threshold_check;
ALTER TABLE alert_rules ALTER COLUMN threshold TYPE double precision;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_threshold_check
    CHECK (threshold >= 0 AND threshold < 'Infinity');
UPDATE alert_rules SET source_ids = ARRAY[source_id] WHERE source_id IS NOT NULL;
UPDATE alert_rules SET search = jsonb_build_array(jsonb_build_array('min_level', min_level::text))
    || CASE WHEN query <> '' THEN jsonb_build_array(jsonb_build_array('q', query))
            ELSE '[]'::jsonb END;
ALTER TABLE alert_rules DROP COLUMN source_id, DROP COLUMN min_level, DROP COLUMN query;

-- Where notifications go. The secret (a webhook's HMAC key) and the URLs of Slack and
-- Teams webhooks (which are their own credentials) are never returned by the API.
CREATE TABLE alert_channels (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'email', 'slack', 'teams')),
    url         text NOT NULL DEFAULT '',
    recipients  text[] NOT NULL DEFAULT '{}',
    secret      text NOT NULL DEFAULT '',
    created_by  integer REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER alert_channels_touch BEFORE UPDATE ON alert_channels
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE alert_rule_channels (
    rule_id     integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    channel_id  integer NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, channel_id)
);
CREATE INDEX alert_rule_channels_channel ON alert_rule_channels (channel_id);

-- One row per rule: the last evaluation instant committed, which fences evaluators (a
-- tick is committed once, whoever evaluates it), the rule's health, and a new-pattern
-- rule's learned message shapes (bounded, see domain/shapes.py).
CREATE TABLE alert_rule_status (
    rule_id       integer PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
    last_tick     timestamptz,
    health        text NOT NULL DEFAULT 'ok' CHECK (health IN ('ok', 'error')),
    reason        text NOT NULL DEFAULT '',
    evaluated_at  timestamptz,
    evaluated_by  text NOT NULL DEFAULT '',
    shapes        jsonb
);

-- The state of each group of a rule ('' for a rule without groups).
CREATE TABLE alert_states (
    rule_id           integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    group_key         text NOT NULL,
    state             text NOT NULL
                      CHECK (state IN ('ok', 'pending', 'firing', 'resolved', 'no_data')),
    since             timestamptz NOT NULL,
    active_since      timestamptz,  -- the condition has held since (pending, firing)
    clear_since       timestamptz,  -- a firing group's condition has been clear since
    value             double precision,
    reason            text NOT NULL DEFAULT '',
    labels            jsonb NOT NULL DEFAULT '{}',
    notified          boolean NOT NULL DEFAULT false,  -- its firing was notified
    last_notified_at  timestamptz,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (rule_id, group_key)
);
CREATE INDEX alert_states_active ON alert_states (state) WHERE state IN ('pending', 'firing');

-- History: transitions, notifications (sent, failed, silenced) and errors, per rule.
CREATE TABLE alert_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id     integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    group_key   text NOT NULL DEFAULT '',
    kind        text NOT NULL CHECK (kind IN ('transition', 'notification', 'error', 'rule')),
    from_state  text,
    to_state    text,
    value       double precision,
    detail      text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_rule ON alert_events (rule_id, id);
CREATE INDEX alert_events_at ON alert_events USING brin (at);

-- The outbox: a notification is written in the transaction that decided it, under an
-- idempotency key made of the rule, the evaluation instant and the channel, so that a
-- tick evaluated twice queues it once; senders claim rows (SKIP LOCKED, with a claim
-- that expires) and retry with backoff.
CREATE TABLE alert_notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    rule_id          integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    channel_id       integer NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    tick             timestamptz NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX alert_notifications_created ON alert_notifications USING brin (created_at);

-- Silences: by rule, by group, by labels (each may be combined), over a time range that
-- may repeat daily or weekly (maintenance windows). A silenced alert keeps its state.
CREATE TABLE alert_silences (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id       integer REFERENCES alert_rules (id) ON DELETE CASCADE,
    group_key     text,
    matchers      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(matchers) = 'object'),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    repeat        text CHECK (repeat IN ('daily', 'weekly')),
    repeat_until  timestamptz,
    comment       text NOT NULL DEFAULT '',
    created_by    integer REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (rule_id IS NOT NULL OR group_key IS NOT NULL OR matchers <> '{}'::jsonb)
);
CREATE INDEX alert_silences_ends ON alert_silences (ends_at);
