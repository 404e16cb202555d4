-- The churn read model, one schema per version (churn_v1, ...).

-- One row per customer: the folded record (doc: feature state, alert lifecycle, score
-- as JSON) and the columns the queues and lists sort and filter on.
CREATE TABLE customers (
    customer_id   text        COLLATE "C" PRIMARY KEY,
    partition     int         NOT NULL,
    seq           bigint      NOT NULL,   -- last stream sequence applied for this customer
    events        bigint      NOT NULL,   -- the customer's events folded
    now_at        timestamptz NOT NULL,   -- event time of the state
    region        text        NOT NULL DEFAULT '',
    tier          text        NOT NULL DEFAULT '',
    value_fen     bigint      NOT NULL DEFAULT 0,  -- monthly spend the customer brings (baseline)
    score         float8,                          -- NULL until scored
    model         text        NOT NULL DEFAULT '',
    scored_at     timestamptz,
    alert_id      text,                            -- the open alert, if any
    terminated_at timestamptz,                     -- the label: never a feature
    doc           bytea       NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX customers_score ON customers (score DESC NULLS LAST, customer_id);
CREATE INDEX customers_live ON customers (partition) WHERE terminated_at IS NULL;

-- Score history: a row when the score moved by at least 0.01 or an alert changed.
CREATE TABLE scores (
    customer_id   text        COLLATE "C" NOT NULL,
    at            timestamptz NOT NULL,
    seq           bigint      NOT NULL,
    score         float8      NOT NULL,
    model         text        NOT NULL,
    PRIMARY KEY (customer_id, seq)
);

-- Monthly feature snapshots, for training: the features as of the last instant of
-- each local month the customer lived through (values in features.Names() order).
CREATE TABLE snapshots (
    customer_id   text        COLLATE "C" NOT NULL,
    month         int         NOT NULL,   -- local month, year*12 + month-1
    as_of         timestamptz NOT NULL,
    vals          float8[]    NOT NULL,
    PRIMARY KEY (customer_id, month)
);
CREATE INDEX snapshots_month ON snapshots (month);

-- Alerts and their lifecycle: open, acknowledged, actioned, closed (retained/churned).
CREATE TABLE alerts (
    alert_id      text        PRIMARY KEY,
    customer_id   text        COLLATE "C" NOT NULL,
    partition     int         NOT NULL,
    state         text        NOT NULL,
    outcome       text        NOT NULL DEFAULT '',
    score         float8      NOT NULL,   -- at raise
    value_fen     bigint      NOT NULL,
    priority      float8      NOT NULL,   -- score x value: the queue's order
    model         text        NOT NULL,
    raised_at     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    closed_at     timestamptz,
    doc           jsonb       NOT NULL
);
CREATE INDEX alerts_queue ON alerts (priority DESC, alert_id) WHERE state <> 'closed';
CREATE INDEX alerts_customer ON alerts (customer_id, raised_at);

-- Scorer activations met in each partition, in log order.
CREATE TABLE activations (
    partition     int         NOT NULL,
    seq           bigint      NOT NULL,
    activation_id text        NOT NULL,
    model         text        NOT NULL,
    effective_at  timestamptz NOT NULL,
    PRIMARY KEY (partition, seq)
);

-- Derived signals this version raised (alert transitions), as emitted: only the
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
