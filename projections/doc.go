// Package projections is touchstream's read side: a runtime that folds the
// TOUCHPOINTS log into PostgreSQL read models, and (in sub-packages) the read models
// themselves.
//
// # Guarantees
//
// A Runner folds a group of projection targets (each target is one version of a read
// model: a PostgreSQL schema such as customer360_v1). For every target and partition:
//
//   - Exactly once. The checkpoint (last stream sequence consumed) is stored in the
//     same transaction as the read-model writes. Events at or below it are skipped, so a
//     redelivery or a restart never applies an event twice, and a crash before the commit
//     loses nothing: the batch is read again from the checkpoint. Batches commit
//     asynchronously (synchronous_commit off, unless Config.DurableCommit): a commit
//     that a database crash takes back takes its checkpoint with it, so the batch is
//     folded again from the log (ADR 20).
//   - One writer. Instances of a group share the partitions through leases with an
//     expiry (fair share: ceil(partitions / live instances)); a dead instance's
//     partitions are taken over within the lease TTL (5s by default). Correctness does
//     not rest on the lease: each checkpoint only advances from the value the writer
//     read (a fence), so a stale writer's commit fails and it reloads.
//   - Order. A customer's events live in one partition and are folded in stream order.
//   - Batching. Events are consumed in batches (up to BatchSize, default 1000; at low
//     load a batch is cut Linger after its first event), folded per customer by each
//     projection with one multi-row statement per table, and committed in ONE
//     transaction that advances the checkpoint of every partition the batch covers. A
//     quiet log costs one commit per batch, never one per partition per event.
//   - Gathering. A catch-up read (CatchUp, a rebuild or replay) at least GatherFrom
//     events behind the log gathers a window of up to GatherBytes and folds
//     it one partition after the other, in batches of up to GatherBatch events of one
//     partition: a customer's events of the window are folded and written once
//     (gather.go, ADR 35).
//   - Nothing unvalidated is folded. Each message is decoded and validated against the
//     stored form of its schema; one that fails is parked, never folded.
//   - Poison never blocks. An event a projection cannot apply (a PoisonError, or a
//     batch failing MaxAttempts times with a non-transient error, which is then applied
//     event by event in savepoints) is parked in projections.dead_letters with its error
//     and attempts, by the target that refused it only (the group's other targets, the
//     timeline among them, still apply it), and the partition goes on. A redrive
//     recomputes the customer (Recomputer); a discard is an event in the log. Transient failures (database or NATS down,
//     deadlocks, the customer index behind) are retried with jittered exponential backoff
//     for as long as the runner runs, resuming from the checkpoints.
//   - Visibility. Lag per target and partition (events and seconds behind the newest
//     event of the partition) is measured every LagInterval into projections.lag and the
//     touchstream_projection_lag_* metrics.
//   - Drain. On cancellation the runner commits the batch in hand (bounded by
//     DrainTimeout), gives its leases back so other instances take over at once, and
//     returns nil.
//
// # Consumption
//
// A runner reads each stream holding its partitions with one ordered consumer
// (ephemeral, flow-controlled, no acknowledgements: the checkpoint is the
// acknowledgement), filtered to its partitions (unfiltered when it holds them all) and
// starting after the lowest checkpoint among its targets. The reader hands each of
// Workers workers (default 2) the messages of its share of the partitions; each worker
// decodes, folds and commits its own batches, so decoding, folding and database round
// trips of several batches overlap. Partitions never move between workers while a
// consumer runs, so a customer's events are still folded in order by one worker.
//
// # Versions, rebuilds and replays
//
// Each projection has one serving version, recorded in projections.serving; readers
// (ServingCache) and the live projector follow it. Rebuild folds a new version (the
// next customer360_vN) from the log in its own lease group while the serving one keeps
// answering, records its progress in projections.rebuilds, resumes after an
// interruption from its own checkpoints, and once caught up switches the pointer in one
// fenced statement (Switch), recording per partition the sequence at which the new
// version took over. The old version is kept until DropTarget. A replay of a range
// (RebuildSpec.FromSeq/ToSeq) builds a version for inspection that can never serve. No
// path re-applies events onto a version that already holds them: one customer is
// recomputed in place from scratch (Recomputer), never patched.
//
// # Writing a projection
//
// A projection implements Projection. It owns its migrations (embedded SQL applied
// with package migrate into its target schema), never reads another projection's
// tables while folding, and uses event time only (Envelope.Time, Batch.PartitionTime),
// never the wall clock, so that a replay gives the same result. Where a fold cannot be
// undone incrementally (after an event.retracted), it recomputes the customer from
// Batch.History, which reads the customer's events through the timeline index.
//
// # Erasure
//
// A projection that keeps personal data, sealed, or anything derived from it (a
// search hash) implements Purger, and applies the same purge when it folds
// customer.erased, so a replay or rebuild after an erasure ends without it. The erasure
// command calls Purge on every version Versions lists (serving, kept after a switch,
// rebuilding) and PurgeDeadLetters, in one transaction.
package projections
