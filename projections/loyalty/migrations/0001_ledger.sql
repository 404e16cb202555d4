-- The loyalty club's read model, one schema per version (loyalty_v1, ...).

-- One row per member: the folded state (doc: the Member as JSON, with its lots and its
-- ledger), and the columns that are searched, summed or scheduled on.
CREATE TABLE members (
    customer_id   text        COLLATE "C" PRIMARY KEY,
    partition     int         NOT NULL,
    tier          text        NOT NULL,
    balance       bigint      NOT NULL,   -- as of now_at, the member's event time
    overdraft     bigint      NOT NULL DEFAULT 0,
    now_at        timestamptz NOT NULL,   -- highest event time applied
    next_due      timestamptz,            -- next lot expiry, tier review or anniversary: a clock tick past it advances the member
    entries_total int         NOT NULL,
    events        bigint      NOT NULL,   -- the member's events folded (every type: time passes with each)
    seq           bigint      NOT NULL,   -- last stream sequence applied for this member
    doc           bytea       NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX members_tier ON members (tier, customer_id);
CREATE INDEX members_due ON members (partition, next_due) WHERE next_due IS NOT NULL;

-- The ledger: every movement of points, traceable to the event that caused it and the
-- rule version that produced it. n is the entry's position in the member's ledger.
CREATE TABLE entries (
    customer_id   text        COLLATE "C" NOT NULL,
    n             int         NOT NULL,
    kind          text        NOT NULL,   -- earn, bonus, redeem, expire, adjust, reverse, retract, overdraft
    points        bigint      NOT NULL,   -- signed
    at            timestamptz NOT NULL,   -- event time
    month         int         NOT NULL,   -- local month (year*12 + month-1), for club totals
    event_source  text        NOT NULL,
    event_id      text        NOT NULL,
    rules         text        NOT NULL DEFAULT '',
    PRIMARY KEY (customer_id, n)
);
CREATE INDEX entries_month ON entries (month, kind);

-- Rule activations met in each partition, in log order: the schedule a member's
-- events are earned under.
CREATE TABLE activations (
    partition     int         NOT NULL,
    seq           bigint      NOT NULL,
    activation_id text        NOT NULL,
    version       text        NOT NULL,
    effective_at  timestamptz NOT NULL,
    PRIMARY KEY (partition, seq)
);

-- Derived signals this version raised (tier changes, overdrafts), as emitted: only the
-- serving version records them (Batch.Emitting), never a rebuild.
CREATE TABLE signals (
    id            text        PRIMARY KEY,
    customer_id   text        COLLATE "C" NOT NULL,
    type          text        NOT NULL,
    at            timestamptz NOT NULL,
    seq           bigint      NOT NULL,
    data          jsonb       NOT NULL
);
CREATE INDEX signals_customer ON signals (customer_id, at);
