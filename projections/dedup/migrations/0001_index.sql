-- The durable idempotency index: every stored event's dedup key (a hash of source and
-- id) and where it lives, kept for the configured horizon so that a channel re-sending
-- a batch file days later, long after the stream's duplicate window, is answered
-- "duplicate" instead of being stored twice. Derived from the log, rebuildable.
CREATE TABLE IF NOT EXISTS dedup_index (
    dedup_key   text        PRIMARY KEY,
    stream      text        NOT NULL,
    seq         bigint      NOT NULL,
    stored_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dedup_index_stored_at ON dedup_index (stored_at);
