-- The outbox of derived signals, in the layout of watermill-sql's PostgreSQL schema
-- and offsets adapters (DefaultPostgreSQLSchema, DefaultPostgreSQLOffsetsAdapter), so
-- that its Publisher writes and its Subscriber reads them.
CREATE TABLE signals (
	"offset" BIGSERIAL,
	"uuid" VARCHAR(36) NOT NULL,
	"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	"payload" JSON DEFAULT NULL,
	"metadata" JSON DEFAULT NULL,
	"transaction_id" xid8 NOT NULL,
	PRIMARY KEY ("transaction_id", "offset")
);

-- The position of each consumer group (one forwarder group): the last acknowledged
-- (transaction, offset). The subscriber locks its row FOR UPDATE while it forwards a
-- batch, so two forwarders of one group never forward at once.
CREATE TABLE signals_offsets (
	consumer_group VARCHAR(255) NOT NULL,
	offset_acked BIGINT,
	last_processed_transaction_id xid8 NOT NULL,
	PRIMARY KEY (consumer_group)
);
