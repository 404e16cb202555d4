-- One row per customer: the 360° profile. Columns that are searched or sorted on are
-- real columns; the rest of the folded state is the doc, JSON kept as bytes (the
-- projection owns its format; SQL consumers read the columns or the documented views). Personal fields are kept only
-- in their sealed (encrypted) form inside doc; phone_hash is a keyed hash derived by
-- decrypting while folding, for search by phone number.
CREATE TABLE profiles (
    customer_id      text        COLLATE "C" PRIMARY KEY,  -- ASCII ids: byte order, prefix search by index
    partition        int         NOT NULL,
    phone_hash       bytea,
    tier             text        NOT NULL,
    lifecycle        text        NOT NULL,
    region           text        NOT NULL DEFAULT '',
    segment          text        NOT NULL DEFAULT '',
    customer_type    text        NOT NULL DEFAULT '',
    spend_3m_fen     bigint      NOT NULL DEFAULT 0,
    as_of_month      int         NOT NULL DEFAULT 0,   -- months since year 0 the tier is computed for
    events_total     bigint      NOT NULL,
    last_event_time  timestamptz NOT NULL,
    seq              bigint      NOT NULL,   -- last stream sequence applied for this customer
    doc              bytea       NOT NULL   -- the folded Profile as JSON; bytea: stored as is, never parsed by the server
) WITH (fillfactor = 80);
CREATE INDEX profiles_phone ON profiles (phone_hash) WHERE phone_hash IS NOT NULL;
CREATE INDEX profiles_tier ON profiles (tier, customer_id);
CREATE INDEX profiles_region ON profiles (region, customer_id);
CREATE INDEX profiles_lifecycle ON profiles (lifecycle, customer_id);
CREATE INDEX profiles_segment ON profiles (segment, customer_id);
-- A month-boundary clock tick re-tiers the partition's customers not seen this month.
CREATE INDEX profiles_as_of ON profiles (partition, as_of_month);
