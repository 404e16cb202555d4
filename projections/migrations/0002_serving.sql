-- Blue/green versions. Readers and the live projector follow `serving`: which version
-- (target schema) of each projection answers queries. A rebuild writes a new target
-- beside it and switches the pointer in one statement once the new target has caught
-- up; the old target is kept until dropped.
CREATE TABLE IF NOT EXISTS serving (
    projection   text        PRIMARY KEY,
    target       text        NOT NULL,
    previous     text,                                 -- the version it replaced, kept until dropped
    switched_at  timestamptz NOT NULL DEFAULT now(),
    switch_seqs  jsonb                                 -- per partition, the stream sequence at which the new version took over
);

-- Rebuilds, running or finished: progress for `status` and the console, and the state
-- that lets an interrupted rebuild resume (its checkpoints are in `checkpoints`).
CREATE TABLE IF NOT EXISTS rebuilds (
    target       text        PRIMARY KEY,
    projection   text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('running', 'switched', 'built', 'dropped', 'failed')),
    replaces     text,                                 -- the serving target when it started
    from_seq     bigint      NOT NULL DEFAULT 0,       -- 0: from the beginning of the log
    to_seq       bigint      NOT NULL DEFAULT 0,       -- 0: to the end, then follow
    pin          text        NOT NULL DEFAULT '',      -- rule or model version the version is pinned to ('' : as the log activates them)
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    seq          bigint      NOT NULL DEFAULT 0,       -- last stream sequence read
    total        bigint      NOT NULL DEFAULT 0,       -- last stream sequence when last measured
    applied      bigint      NOT NULL DEFAULT 0,       -- events read so far
    error        text
);
CREATE INDEX IF NOT EXISTS rebuilds_running ON rebuilds (projection) WHERE status = 'running';
