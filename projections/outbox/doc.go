// Package outbox is the transactional outbox of derived signals (tier changes,
// overdrafts, churn alerts, SLA breaches) and the forwarder that moves them to the
// JetStream stream SIGNALS.
//
// # Emitting
//
// A projection emits inside Apply, in its batch transaction, and only for events that
// projections.Batch.Emitting allows (the serving version, never a rebuild):
//
//	if ok, err := b.Emitting(ctx, e); err != nil {
//		return err
//	} else if ok {
//		s, err := outbox.NewSignal("loyalty.tier_changed", e, target, "gold", data)
//		...
//		sigs = append(sigs, s)
//	}
//	...
//	return outbox.Emit(ctx, tx, sigs...)
//
// Emit writes the signals with watermill-sql's Publisher bound to the caller's pgx
// transaction (TxFromPgx), one multi-row INSERT per call (up to 5,000 rows): a signal
// exists if and only if the batch that derived it commits, and a rolled-back or
// fenced batch emits nothing. Emit validates every signal first (Signal.Validate names
// the field) and writes nothing if one is invalid. A projection that emits calls
// Migrate from its own Migrate.
//
// # Identity
//
// A signal's id is derived (NewID: UUIDv5 over type, the cause's source and id, and a
// discriminator), so the same fact always has the same id, whichever version or
// process derived it. The id is the message's Nats-Msg-Id, and consumers deduplicate
// on it. Signals carry ids, codes, numbers and reasons, never personal data.
//
// # Tables
//
// Schema "outbox" (Migrate) holds signals, in the layout of watermill-sql's
// DefaultPostgreSQLSchema (offset, uuid = signal id, created_at, payload = the Signal as
// JSON, metadata, transaction_id xid8), and signals_offsets, in the layout of its
// DefaultPostgreSQLOffsetsAdapter (one row per consumer group: the last acknowledged
// transaction and offset). Every signal type shares the one table.
//
// # Forwarding
//
// Forwarder.Run reads the outbox with watermill-sql's Subscriber and publishes each
// signal to signals.<type> with Nats-Msg-Id = signal id, waiting for the stream's
// acknowledgement before acknowledging it in the outbox. The subscriber reads only rows
// of committed transactions older than every running one (xid8 < the snapshot's xmin),
// in (transaction, offset) order, so signals reach SIGNALS in commit order per
// partition (a partition's batches are sequential transactions). Batches of up to 500
// rows are read in one transaction that holds the consumer group's offsets row FOR
// UPDATE and records the new position at its end: two forwarders of one group (two
// projector processes) never forward at once, and a forwarder that dies mid-batch
// leaves the position at the last committed batch.
//
// Delivery is at least once: after a crash, a cancellation or dropped PostgreSQL
// connections, up to one batch is published again. Those repeats carry the same
// Nats-Msg-Id and are dropped by the stream's duplicate window (ten minutes by
// default, see events/streams), counted as outcome="duplicate"; consumers deduplicate
// on the id for anything older. A publish that fails (NATS down, SIGNALS missing) is
// retried forever, in order, every RetryInterval; nothing behind it is forwarded
// first.
//
// Forwarded rows stay in the outbox for Retention (7 days by default) for
// inspection, then the forwarder deletes them (Prune); rows not yet forwarded are never
// deleted.
//
// The forwarder is a small loop rather than watermill's components/forwarder: that
// component wraps every message in an envelope naming its destination topic (payload
// base64 inside JSON), which would hide the signal from SQL inspection of the outbox,
// duplicates what the signal's type already says, and needs a watermill Router and a
// watermill NATS publisher around nats.go. Publishing with nats.go's jetstream directly
// gives the message id, the expected stream and the stored/duplicate outcome in a few
// lines, and keeps the projections module free of watermill-nats (whose default
// consumers are ephemeral; only subscribers would care, but the dependency is not
// needed).
//
// # Metrics
//
// touchstream_signals_forwarded_total{outcome=stored|duplicate|invalid},
// touchstream_signals_forward_errors_total, and touchstream_signals_forward_lag_seconds
// (a histogram of the time from emission to storage in SIGNALS).
package outbox
