-- The key service's store: customers' data keys, wrapped under a master key-encryption
-- key (KEK), and the tombstones of erased keys. No key material is ever stored in clear.

-- Key-encryption keys this store has used, by fingerprint (never the key itself).
-- Exactly one is current: new data keys are wrapped under it. A key service given
-- another master key refuses to start instead of mixing KEKs. Rotation (re-wrapping
-- every data key under a new KEK, then retiring the old one) is a later migration.
CREATE TABLE IF NOT EXISTS keks (
    kek_id      text        PRIMARY KEY,
    state       text        NOT NULL DEFAULT 'current' CHECK (state IN ('current', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS keks_one_current ON keks (state) WHERE state = 'current';

-- One current data key per customer. wrapped = AES-256-GCM nonce (12 bytes) ||
-- ciphertext of the 32-byte key || tag (16 bytes), with additional data binding the
-- key id and the customer id, under the KEK named by kek_id.
CREATE TABLE IF NOT EXISTS data_keys (
    customer_id  text        PRIMARY KEY CHECK (customer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    key_id       text        NOT NULL UNIQUE,
    kek_id       text        NOT NULL REFERENCES keks (kek_id),
    wrapped      bytea       NOT NULL CHECK (length(wrapped) = 60),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Erased keys: ids only, never key material. An erased key id never comes back.
CREATE TABLE IF NOT EXISTS erased_keys (
    key_id       text        PRIMARY KEY,
    customer_id  text        NOT NULL,
    erased_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS erased_keys_customer ON erased_keys (customer_id);
