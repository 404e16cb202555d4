-- Every event of every customer, for the timeline and as the index from customer to
-- stream sequences (audit history and per-customer rebuilds read it, then fetch the
-- messages from the log directly). Personal fields are not kept here: data holds the
-- payload without them.
CREATE TABLE events (
    customer_id        text        NOT NULL,
    event_time         timestamptz NOT NULL,
    seq                bigint      NOT NULL,
    stream             text        NOT NULL,
    partition          int         NOT NULL,
    stored_at          timestamptz NOT NULL,
    type               text        NOT NULL,
    source             text        NOT NULL,
    event_id           text        NOT NULL,
    data               bytea       NOT NULL,  -- the payload's JSON without personal fields, kept as is
    retracted_by       bigint,
    retraction_reason  text,
    PRIMARY KEY (customer_id, event_time, seq)
);
