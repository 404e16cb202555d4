// Package servicelevel is the service-level read model (服务等级): the call center's
// share of inbound calls answered within 20 seconds against the 85% target, complaint
// resolution against promised deadlines, and enterprise (group) customers' SLA breaches,
// with the reads the dashboards use.
//
// # Tables (one schema per version, servicelevel_v1, ...)
//
//   - calls_hourly: per queue and local hour (the hour's start in the operator's zone,
//     Asia/Shanghai by default, stored as timestamptz), additive counters of inbound
//     calls: offered, answered, answered within 20 s (wait_seconds <= 20), abandoned
//     (not answered), the sum of their waits (answered or not) and the sum of the
//     handling time of the answered ones. Outbound calls (telesales, retention) are
//     counted in outbound only and are no part of the answer rate. A batch aggregates
//     its calls in memory and writes one INSERT ... ON CONFLICT DO UPDATE adding its
//     deltas; every (queue, hour) a batch touched is written, even when its changes
//     cancel out, so the rows never depend on batch boundaries.
//   - calls: every call folded, by its event (source, id), with what it added, so that
//     a retraction subtracts exactly that. A call event seen again (same source and id)
//     is folded once.
//   - complaints: per (customer, complaint id): opened_at and promised_by (from
//     complaint.opened), resolved_at (complaint.resolved), whether it is breached, when
//     and why, the enterprise flag, and the events that opened and resolved it.
//   - customers: every customer seen, whether it is an enterprise customer
//     (customer.registered with customer_type "enterprise"; the latest registration
//     decides) and how many of its events this version folded.
//   - signals: the derived signals this version raised, as emitted.
//
// # Time and breaches
//
// The projection never reads the wall clock. Each partition has a "now": the highest
// event time it has applied (Batch.PartitionTime before the batch, then each event in
// stream order). A complaint is breached
//
//   - when resolved after its promised_by (reason resolved_late, breached_at is the
//     resolution's time), or
//   - when its partition's now passes promised_by while it is still open: a clock.ticked
//     of its partition, or any later event of the partition (reason deadline_passed,
//     breached_at is the partition's now at that event). A complaint opened with a
//     deadline the partition's time has already passed is breached by its opening.
//
// Events are folded one by one in stream order: the partition's now moves to the
// event's time, the event is applied, then every open complaint of the partition whose
// deadline now has passed is breached, caused by that event. The result is therefore the
// same whatever the batch size. A breach is final; only a retraction of the opening
// undoes it. A complaint opened or resolved twice keeps the first opening and the first
// resolution.
//
// Out of order across channels: a resolution folded before its opening keeps a row with
// only resolved_at; the opening completes it, and it is breached then (caused by the
// opening) if the resolution came after the deadline, never otherwise.
//
// # Retractions
//
// An event.retracted naming an event of the same customer undoes it: a call is
// subtracted from its hour (its calls row marked retracted, so a second retraction
// does nothing); a complaint's opening is removed (the complaint disappears unless its
// resolution is known; a breach already signalled is followed by a
// servicelevel.complaint_breach_withdrawn signal); a resolution is removed (the
// complaint is open again and is breached at once if its deadline has passed). A
// retraction of an unknown event, of another customer's event or of another type of
// event is ignored (customer.registered is not undone).
//
// # Signals
//
// servicelevel.complaint_breached is emitted once per breach, caused by the event that
// revealed it (the tick, the late resolution, the opening), with the id
// outbox.NewID(type, cause, customer+"/"+complaint id), so the same fact always has the
// same id; its data is BreachData: complaint id, opened_at, promised_by, breached_at,
// reason and enterprise_sla (an enterprise customer's contractual deadline), never
// personal data. Signals are recorded in the version's signals table and, with
// Options.Outbox, written to the transactional outbox in the batch's transaction, only
// where Batch.Emitting allows: the serving version, never a rebuild or a replay.
//
// # Reads
//
// AnswerRate (hourly series of a queue or of all queues, with the share answered within
// 20 s against AnswerTarget), Breaches (complaints breached in a period), OpenComplaints
// (a customer's, earliest deadline first) and SummaryOf (the day's answer rate per queue,
// open complaints and those past their deadline).
package servicelevel
