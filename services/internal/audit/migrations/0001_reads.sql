-- The access audit log: one row per read that returned a customer's personal fields
-- (masked or in clear), written by the query API before it answers (fail closed). It
-- holds ids and field names only, never the values: staff ids are account ids,
-- customer ids opaque operator ids. It is state outside the log and is backed up
-- (ARCHITECTURE, "State that is not in the log"); rows older than the configured
-- retention are deleted by the query service.
CREATE TABLE IF NOT EXISTS reads (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,             -- when the read was answered (the server's clock)
    staff_id    text        NOT NULL,
    roles       text[]      NOT NULL,
    customer_id text        NOT NULL,
    fields      text[]      NOT NULL,             -- name, phone, id_number, address
    clear       boolean     NOT NULL,             -- in clear (true) or masked (false)
    route       text        NOT NULL,             -- the route's name: customer, search, ...
    request_id  text        NOT NULL
);
-- The audit queries: by customer, by staff member, newest first; the pruning by time.
CREATE INDEX IF NOT EXISTS reads_customer ON reads (customer_id, id DESC);
CREATE INDEX IF NOT EXISTS reads_staff ON reads (staff_id, id DESC);
CREATE INDEX IF NOT EXISTS reads_at ON reads (at);
