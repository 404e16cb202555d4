// Package erase is touchstream's erasure: a customer's right to be forgotten (PIPL),
// and the retention limits of personal data. The log is immutable, so erasure is
// crypto-shredding: every personal field in the log is sealed with the customer's data
// key, and deleting that key makes every copy unreadable, in the log and in its
// backups. What the read models derived while the key existed is purged.
//
// # Order of the steps (ADR 27)
//
// Eraser.Erase runs, for one customer, under a PostgreSQL advisory lock (a second run
// for the same customer at the same time gets ErrBusy):
//
//  1. Log. A customer.erased event (reason code, operator id, requested_at; no
//     personal data) is published to the log under the erasure command's source, with
//     an id fixed when the request is recorded (erasure.requests), so a retry is a
//     duplicate, not a second erasure. It is the durable intent: from here on the
//     erasure survives anything. The key service re-applies it at start (a key store
//     restored from an older backup), and every projection that keeps personal data
//     purges the customer when it folds it, so a replay or rebuild derives nothing.
//  2. Keys. The customer's data keys are deleted through the key service
//     (keystore.SubjectErase). The ids found are recorded before the deletion, so a run
//     cut short in between still reports them. From now on nothing can open the
//     customer's sealed fields or derive a search hash from them, except a client
//     that cached the key: the erasure is complete at CompleteAfter, the deletion time
//     plus the longest client key cache lifetime (deploy/privacy.json key_cache_ttl).
//  3. Purge. In one transaction, which also records what it removed: every version of
//     every read model present in the database (projections.Versions: serving, kept
//     after a switch, rebuilding) whose projection implements projections.Purger; the
//     dead letters' error texts (projections.PurgeDeadLetters); the notifier's parked
//     deliveries of the customer's signals (notify.PurgeCustomer). Purging after the
//     key is gone is final: no fold can derive the data again. A batch that the live
//     projector had in flight may write back what it loaded before; it then folds the
//     erasure (published first, earlier in the partition) and purges again. The
//     receipt lists the versions still folded that have not reached the erasure yet.
//
// # Idempotence
//
// Each step records its completion in erasure.requests (ids only). Running Erase
// again for a customer whose request is unfinished continues it: steps already done
// are reported "already done" with their time, the purge is run again (it is
// idempotent) and adds what it finds. Once a request is finished, Erase makes a new one
// only if something is left (a data key: the customer came back; or rows a purge
// would change); otherwise it answers with the last receipt, AlreadyErased set, and
// records nothing.
//
// # Receipt
//
// A Receipt lists the event (id, stream, sequence), the data keys deleted, the rows
// removed per version and store, the versions whose read model holds no personal
// data, the steps with their status and time, CompleteAfter, and what an erasure
// keeps by design (the sealed log, ids and aggregates, the access audit log's ids and
// field names, the key store's tombstones, backups until they expire).
//
// # Retention
//
// Sweep erases the personal data of customers whose last subscription.terminated, by
// event time, is older than the limit of deploy/privacy.json (retention
// terminated_customers), unless they registered again since or were erased since. It
// finds them through the serving customer 360 (lifecycle terminated) and the serving
// timeline (their event times), never by scanning the log, and erases each through
// Erase with reason "retention": the same path, the same record in the log. A sweep
// erases at most max_per_sweep customers, oldest termination first; the next
// continues. Its clock is Config.Now, so it is tested on a pinned clock.
//
// Personal data never appears in logs, errors or receipts: customer ids, key ids,
// operator ids, reason codes and counts only.
package erase
