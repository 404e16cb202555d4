-- The service-level read model, one schema per version (servicelevel_v1, ...).

-- Call center traffic per queue and local hour (the hour's start, truncated in the
-- operator's zone). Inbound calls only in offered/answered/within_20s/abandoned and the
-- sums; outbound calls are counted apart and are no part of the answer rate.
CREATE TABLE calls_hourly (
    queue            text        COLLATE "C" NOT NULL,
    hour             timestamptz NOT NULL,
    offered          bigint      NOT NULL DEFAULT 0, -- inbound calls
    answered         bigint      NOT NULL DEFAULT 0, -- inbound, answered
    within_20s       bigint      NOT NULL DEFAULT 0, -- inbound, answered with wait_seconds <= 20
    abandoned        bigint      NOT NULL DEFAULT 0, -- inbound, not answered
    wait_seconds     bigint      NOT NULL DEFAULT 0, -- sum over inbound calls (answered or not)
    handling_seconds bigint      NOT NULL DEFAULT 0, -- sum over answered inbound calls
    outbound         bigint      NOT NULL DEFAULT 0, -- outbound calls (not in the answer rate)
    PRIMARY KEY (queue, hour)
);

-- Every call folded, by its event, so that a retraction undoes exactly what it added.
CREATE TABLE calls (
    event_source     text        COLLATE "C" NOT NULL,
    event_id         text        COLLATE "C" NOT NULL,
    customer_id      text        COLLATE "C" NOT NULL,
    queue            text        COLLATE "C" NOT NULL,
    hour             timestamptz NOT NULL,
    inbound          boolean     NOT NULL,
    answered         boolean     NOT NULL,
    within_20s       boolean     NOT NULL,
    wait_seconds     int         NOT NULL,
    handling_seconds int         NOT NULL,
    retracted        boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (event_source, event_id)
);

-- Complaints against their promised deadlines. A row may hold a resolution whose
-- opening is not folded yet (opened_at and promised_by null).
CREATE TABLE complaints (
    customer_id      text        COLLATE "C" NOT NULL,
    complaint_id     text        COLLATE "C" NOT NULL,
    partition        int         NOT NULL,
    opened_at        timestamptz,
    promised_by      timestamptz,
    resolved_at      timestamptz,
    enterprise       boolean     NOT NULL DEFAULT false,
    breached         boolean     NOT NULL DEFAULT false,
    breached_at      timestamptz,
    breach_reason    text,                 -- deadline_passed or resolved_late
    opened_source    text        COLLATE "C",
    opened_id        text        COLLATE "C",
    resolved_source  text        COLLATE "C",
    resolved_id      text        COLLATE "C",
    PRIMARY KEY (customer_id, complaint_id)
);
-- Open complaints by deadline, per partition: what a clock tick may breach.
CREATE INDEX complaints_due ON complaints (partition, promised_by)
    WHERE resolved_at IS NULL AND NOT breached AND promised_by IS NOT NULL;
CREATE INDEX complaints_breached ON complaints (breached_at) WHERE breached;
CREATE INDEX complaints_opened_ref ON complaints (opened_source, opened_id);
CREATE INDEX complaints_resolved_ref ON complaints (resolved_source, resolved_id);

-- Customers seen: whether they are enterprise (group) customers, and how many of their
-- events this version folded (every type).
CREATE TABLE customers (
    customer_id      text        COLLATE "C" PRIMARY KEY,
    enterprise       boolean     NOT NULL DEFAULT false,
    events           bigint      NOT NULL DEFAULT 0
);

-- Derived signals this version raised (breaches, withdrawn breaches), as emitted: only
-- the serving version records them (Batch.Emitting), never a rebuild.
CREATE TABLE signals (
    id               text        PRIMARY KEY,
    customer_id      text        COLLATE "C" NOT NULL,
    type             text        NOT NULL,
    at               timestamptz NOT NULL,
    seq              bigint      NOT NULL,
    data             jsonb       NOT NULL
);
