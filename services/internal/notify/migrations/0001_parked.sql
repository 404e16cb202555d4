-- Parked deliveries: a signal a webhook refused permanently (a 4xx other than 408 and
-- 429) or kept failing after every retry. One row per webhook and signal; parking the
-- same signal again (a redelivery from the stream) updates the row and adds its
-- attempts. The body is the signal exactly as stored in SIGNALS (text, byte for byte).
CREATE TABLE parked (
	webhook text NOT NULL,
	signal_id text NOT NULL,
	signal_type text NOT NULL,
	body text NOT NULL,
	last_error text NOT NULL,
	attempts int NOT NULL,
	parked_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (webhook, signal_id)
);

CREATE INDEX parked_by_time ON parked (webhook, parked_at);
