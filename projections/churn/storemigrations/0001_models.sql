-- The churn model store: trained models are state that is not in the log, named by
-- the sha256 of their canonical content, so an activation in the log always means
-- the same model. Shared by every version of the churn projection; back it up.
CREATE TABLE models (
    version     text        PRIMARY KEY,  -- sha256:<hex> of the content
    kind        text        NOT NULL,     -- logistic, gbt
    threshold   float8      NOT NULL,
    rows        int         NOT NULL,
    positives   int         NOT NULL,
    metrics     jsonb       NOT NULL,     -- training and validation metrics
    spec        jsonb       NOT NULL,     -- what it was trained on (months, horizon, window)
    doc         bytea       NOT NULL,     -- the canonical encoding
    created_at  timestamptz NOT NULL DEFAULT now()
);
