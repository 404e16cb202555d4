-- The projection runtime's own state, shared by every projection version ("target":
-- the PostgreSQL schema a version writes, e.g. customer360_v1).

-- Where each target stands in each partition. seq only ever advances from its previous
-- value (the fence): a stale writer's commit fails instead of applying twice.
CREATE TABLE IF NOT EXISTS checkpoints (
    target          text        NOT NULL,
    partition       int         NOT NULL,
    stream          text        NOT NULL,
    seq             bigint      NOT NULL DEFAULT 0,
    applied         bigint      NOT NULL DEFAULT 0,  -- events consumed (applied, skipped or parked)
    partition_time  timestamptz,                     -- highest event time applied: the partition's "now"
    last_stored_at  timestamptz,                     -- log timestamp of the last event consumed
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, partition)
);

-- Lag per target and partition, refreshed by the owning runner.
CREATE TABLE IF NOT EXISTS lag (
    target       text        NOT NULL,
    partition    int         NOT NULL,
    lag_events   bigint      NOT NULL,
    lag_seconds  double precision NOT NULL,
    owner        text,
    measured_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, partition)
);

-- Exactly one active writer per (group, partition): leases with an expiry, renewed by
-- the owner's heartbeat, taken over when it lapses.
CREATE TABLE IF NOT EXISTS leases (
    grp         text        NOT NULL,
    partition   int         NOT NULL,
    owner       text,
    epoch       bigint      NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (grp, partition)
);

-- Live runner instances per group, for fair shares of the partitions.
CREATE TABLE IF NOT EXISTS members (
    grp       text        NOT NULL,
    instance  text        NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grp, instance)
);

-- Events a target could not apply. The partition went on without them.
CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial   PRIMARY KEY,
    target        text        NOT NULL,
    partition     int         NOT NULL,
    stream        text        NOT NULL,
    seq           bigint      NOT NULL,
    event_source  text,
    event_id      text,
    event_type    text,
    customer_id   text,
    error         text        NOT NULL,
    attempts      int         NOT NULL DEFAULT 1,
    status        text        NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'redriven', 'discarded')),
    parked_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    UNIQUE (target, stream, seq)
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (target, partition) WHERE status = 'parked';
