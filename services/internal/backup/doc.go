// Package backup is `touchstream backup` and `touchstream restore`: a backup of the
// log (every JetStream stream of the layout, and SIGNALS) together with the state that
// is not in the log (PostgreSQL schemas and the deploy directory's configuration), and
// a restore of it into an empty NATS and database, from which the projector rebuilds
// every read model. ADR 31 gives the reasons for the order; ADR 32 the choice of
// pg_dump.
//
// # What a backup holds
//
//   - streams/<stream>.snapshot: a JetStream snapshot of each log stream and of
//     SIGNALS, taken through the JetStream API ($JS.API.STREAM.SNAPSHOT.<stream>,
//     chunks acknowledged on their reply subjects): the stream's configuration, its
//     messages with their sequences, timestamps and headers (Nats-Msg-Id), and for
//     SIGNALS its consumers (the notifier's durables and their positions). Log streams
//     are snapshotted without consumers: projectors read with ephemeral ordered
//     consumers and their position is their checkpoint.
//   - postgres/<schema>.dump: pg_dump (custom format) of each declared schema:
//     before the log, the idempotency index (dedup); after it, the key store
//     (keystore), the churn model store (churn_models) and the access audit log
//     (access_audit). A declared schema that does not exist is recorded as absent in
//     the manifest and reported, never an error.
//   - postgres/state-before-log.json and state-after-log.json: rows read in the same
//     database snapshot as their phase's dumps: the migration records of the dumped
//     schemas, the serving versions (projections.serving), the checkpoints of the
//     serving versions and of the idempotency index, and the key store's master key
//     fingerprint.
//   - deploy/*.json: the deploy directory's configuration files (streams, channels
//     with their hashed API keys, access with hashed tokens, rules, ...).
//   - manifest.json, written last (a directory without it is an unfinished backup):
//     format, touchstream version, layout, the timed steps in order, each stream's
//     state at its snapshot (messages, first and last sequence), each schema's tables
//     and row counts, and the size and sha256 of every file.
//
// Read models are not backed up: they are derived, and rebuilt from the restored log.
//
// # Order, and why nothing is lost or unreadable
//
// The log only grows (deny delete, deny purge), data keys and models are only added
// (or erased), and every read-model row is committed with the checkpoint that covers
// it. So:
//
//  1. Before the log, in one exported database snapshot: the idempotency index and
//     its checkpoints, the serving versions and their checkpoints. Everything they
//     name is at or below a checkpoint, hence in the log snapshotted after: the index
//     never answers "duplicate" for an event the restored log lacks, and resumes from
//     its checkpoints.
//  2. The log streams, then SIGNALS. Each snapshot is of one point of its stream;
//     writes go on meanwhile and are simply not in it.
//  3. After the log, in one exported snapshot: the key store, the model store, the
//     access audit log. Every data key an event of the snapshot was sealed with was
//     created before the event was stored, so it is in the key store dumped after; the
//     same holds for a model named by an activation event.
//  4. The configuration files.
//
// # Restore
//
// Restore changes nothing until it has checked, in this order: the manifest (format,
// completeness, every file's size and sha256), the master key (the one the backup's
// data keys are wrapped under, when the backup holds a key store), and the target:
// none of the backup's streams may exist, nor any touchstream schema (a migrated
// schema, the runtime's projections schema, a schema of the backup), nor a differing
// configuration file; otherwise ErrNotEmpty, unless Force, which deletes and drops them
// first. DryRun stops after the checks. Then:
//
//  1. Streams, through $JS.API.STREAM.RESTORE.<stream> with the configuration and
//     state of the snapshot; each restored stream's messages, first and last
//     sequence must equal the manifest's.
//  2. PostgreSQL: the runtime schema (projections.Migrate), every dump (pg_restore, one
//     transaction each), the migration records, the idempotency index's checkpoints,
//     and the serving versions, each recording as its switch sequences the
//     checkpoints it had at backup time: the rebuilt version emits signals only for
//     events past them, so a restore does not send history's signals again (those
//     up to them were emitted before the backup and are in the restored SIGNALS, or
//     delivered). Each table's rows must equal the manifest's counts.
//  3. The configuration files, into DeployTo.
//  4. Last, the erasures recorded in the log win over the restored key store:
//     keystore.Reapply erases again every key an erasure in the restored log covers
//     (a backup older than an erasure still holds the key), as the key service does
//     when it starts.
//
// The report says exactly what was restored: streams and their sequences, schemas and
// rows per table, checkpoints, serving versions, files, data keys, erasures
// re-applied. What remains is the projector's: started on the restored database, it
// rebuilds every read model from the restored log; `touchstream verify` then checks
// customer360 against it.
package backup
