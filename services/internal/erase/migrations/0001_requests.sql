-- Erasure requests: the erasure command's own progress, so that a run cut short is
-- completed by the next one, and a receipt can say what was done when. Ids only:
-- customer, operator and key ids, never personal data. The log holds the durable
-- record of each erasure (its customer.erased event); this table is working state.
CREATE TABLE requests (
    id              bigserial   PRIMARY KEY,
    customer_id     text        NOT NULL CHECK (customer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    event_id        text        NOT NULL UNIQUE,       -- the customer.erased event's id
    reason          text        NOT NULL,
    operator        text        NOT NULL,
    requested_at    timestamptz NOT NULL,              -- the event's time and requested_at
    stream          text,                              -- where the log stored the event, once published
    seq             bigint,
    logged_at       timestamptz,
    key_ids         text[]      NOT NULL DEFAULT '{}', -- keys found before deleting them
    keys_erased_at  timestamptz,
    purged          jsonb,                             -- rows removed, per target and table, summed over runs
    purged_at       timestamptz,
    complete_after  timestamptz,                       -- keys_erased_at + the longest client key cache lifetime
    finished_at     timestamptz
);
-- At most one unfinished request per customer: a new run continues it.
CREATE UNIQUE INDEX requests_open ON requests (customer_id) WHERE finished_at IS NULL;
CREATE INDEX requests_customer ON requests (customer_id, id);
