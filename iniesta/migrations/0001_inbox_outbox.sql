-- iniesta's inbox and outbox. A template: {schema}, {inbox}, {outbox} and {channel} are
-- replaced by the configured names (plain lower-case SQL names, checked before) when
-- `iniesta db migrate` or INIESTA_DATABASE_MIGRATE=true applies it. Every statement can run
-- again without harm.

CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per message a consumer handled, committed in the handler's own transaction.
CREATE TABLE IF NOT EXISTS {schema}.{inbox} (
    consumer     text        NOT NULL,
    message_key  text        NOT NULL,
    handler      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_key)
);
CREATE INDEX IF NOT EXISTS {inbox}_processed_at ON {schema}.{inbox} (processed_at);

-- Messages to send, committed with the business writes that caused them; the relay sends
-- them in `seq` order (per aggregate) and marks them delivered.
CREATE TABLE IF NOT EXISTS {schema}.{outbox} (
    seq              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       text        NOT NULL,
    aggregate_id     text,
    correlation_id   text        NOT NULL,
    causation_id     text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    destination_kind text        NOT NULL CHECK (destination_kind IN ('queue', 'topic')),
    destination      text        NOT NULL,
    event_key        text,
    body             bytea       NOT NULL,
    attributes       jsonb       NOT NULL,
    group_id         text,
    deduplication_id text,
    delay_ms         bigint      NOT NULL DEFAULT 0,
    attempts         integer     NOT NULL DEFAULT 0,
    available_at     timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    CONSTRAINT {outbox}_message_id UNIQUE (message_id)
);
CREATE INDEX IF NOT EXISTS {outbox}_pending
    ON {schema}.{outbox} (seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS {outbox}_pending_aggregate
    ON {schema}.{outbox} (aggregate_id, seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS {outbox}_delivered
    ON {schema}.{outbox} (delivered_at) WHERE delivered_at IS NOT NULL;

-- Wakes the relays when a transaction that wrote to the outbox commits (PostgreSQL sends
-- notifications at commit, once per channel and payload per transaction).
CREATE OR REPLACE FUNCTION {schema}.{outbox}_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS {outbox}_notify ON {schema}.{outbox};
CREATE TRIGGER {outbox}_notify AFTER INSERT ON {schema}.{outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{outbox}_notify();
