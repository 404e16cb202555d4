-- Redemption reservations: the redemption service's command-side working state. A
-- reservation holds a member's points from the moment a redemption is accepted until
-- the loyalty projection folds its points.redeemed event and settles it (in the fold's
-- own transaction), so that available = projected balance - unsettled reservations is
-- never counted twice nor missed. The outcome of every reservation is an event in the
-- log; this table is backed up with the log (ARCHITECTURE, "State that is not in the
-- log").
CREATE TABLE IF NOT EXISTS reservations (
    id               text        PRIMARY KEY,            -- also the redemption id and the event id
    customer_id      text        NOT NULL,
    idempotency_key  text        NOT NULL,
    points           bigint      NOT NULL CHECK (points > 0),
    partner          text        NOT NULL,
    item             text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'published', 'settled', 'failed')),
    created_at       timestamptz NOT NULL,               -- the service's clock; the event's time
    event_source     text        NOT NULL,
    event_id         text        NOT NULL,
    stream_seq       bigint,                             -- of points.redeemed, once acknowledged
    published_at     timestamptz,
    settled_at       timestamptz,
    reversal_reason  text,                               -- set once a reversal is accepted
    reversal_status  text        CHECK (reversal_status IN ('pending', 'published')),
    reversal_event_id text,
    reversal_seq     bigint,
    reversed_at      timestamptz,
    UNIQUE (customer_id, idempotency_key)
);
-- What the availability check sums: a member's unsettled reservations.
CREATE INDEX IF NOT EXISTS reservations_open ON reservations (customer_id)
    INCLUDE (points) WHERE status IN ('pending', 'published');
-- What the sweeper republishes.
CREATE INDEX IF NOT EXISTS reservations_pending ON reservations (created_at)
    WHERE status = 'pending' OR reversal_status = 'pending';
