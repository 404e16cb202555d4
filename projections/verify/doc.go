// Package verify checks a customer360 read model against the log, independently of the
// projection's own fold (`touchstream verify`).
//
// # What is compared
//
// For every customer of every partition, the verifier recomputes from the raw events
// of the log and compares with the customer's row of the target's profiles table:
//
//   - events_total: how many of the customer's events the profile reflects;
//   - seq_hash: the order-independent hash of their stream sequences
//     (customer360.SeqHash: sum mod 2^64 of splitmix64(seq)), which catches an event
//     applied twice and another skipped even when the count agrees;
//   - recharge_total_fen: recharge.completed amounts minus recharge.reversed amounts;
//   - lifetime_spend_fen: recharges and reversals plus bill.issued and bill.adjusted.
//
// # Which events count
//
// An event counts for a customer when its envelope names the customer, its stream
// sequence is at or below the target's checkpoint of its partition, and the target has
// not parked it (a dead letter that is not redriven). Partition-wide events (clock
// ticks, activations) count for no customer. Retractions (event.retracted) and the
// events they retract count in events_total and seq_hash, like any event consumed, but
// a retracted event counts in no money total, whatever the order in which the
// retraction and its target appear; a retraction never undoes another retraction.
//
// # Consistency
//
// Checkpoints, dead letters and profiles are read in one REPEATABLE READ, READ ONLY
// transaction: the projection commits its rows and its checkpoints together, so the
// snapshot is a state the read model really had, and a projector may keep folding
// while verification runs. The log is then read up to the snapshot's checkpoints.
//
// # Cost
//
// Each stream of the layout is read once with an ordered consumer, in batches, up to
// the highest checkpoint of its partitions; per customer the verifier keeps a small
// fixed-size tally, and per money event a 64-bit key (so that a later retraction can
// take its amount back). The read model is read with one query per partition.
//
// # Results
//
// A Report lists, per partition, whether it verified, how many customers and events
// were checked, how many customers differ and the first differing customer by id
// (customer ids only: no personal data), with the expected (log) and actual (read
// model) values. Each run sets touchstream_verify_last_ok{target} and adds the
// differing customers to touchstream_verify_mismatches_total{target,partition}.
package verify
