// Package loyalty is the loyalty club's read model (客户俱乐部): a projection that folds
// the log into per-member points ledgers with the pure core in package ledger, and the
// reads the club's queries and the redemption service use.
//
// # Tables (one schema per version, loyalty_v1, ...)
//
//   - members: one row per member, the folded ledger.Member as a document (lots,
//     entries, tier qualification) with its balance, tier, overdraft and the time it
//     next has something due (an expiry, a review, an anniversary) as columns.
//   - entries: the ledger, one row per movement (earn, bonus, redeem, expire, adjust,
//     reverse, retract, overdraft), each with the event that caused it and the rule
//     version that produced it.
//   - activations: the rule versions activated in each partition, in log order.
//   - signals: the derived signals this version raised (tier changes, overdrafts).
//
// # Rules in the log
//
// A rule version becomes active through a loyalty.rules_activated event, published to
// every partition: an event earns under the activations met before it in its
// partition's stream, the last one effective at or before its event time. Before any
// activation the club is closed: events change no ledger. A version can also be
// pinned (Options.Pin) for a blue/green rebuild that recomputes history under one rule
// version, for a correction or a what-if; the rebuild records the pin
// (projections.TargetPin) so the projector continues the version under it.
//
// # Event time
//
// Like the ledger, the projection never reads the wall clock. A silent member's
// expiries, tier reviews and anniversaries are applied when a clock tick of its
// partition passes members.next_due; between ticks, Balance(asOf) counts only the lots
// unexpired at asOf anyway, so balances as of any moment are exact.
//
// # Corrections, signals, redemptions
//
// A retraction that hits an event already in a ledger recomputes the member from its
// events in the log (Batch.History, the timeline index); a tier that changes by it is
// followed by a correcting tier_changed signal. Signals are emitted only where
// Batch.Emitting allows (the serving version, never a rebuild), with ids derived from
// their cause so the same fact always has the same id. A points.redeemed carrying a
// reservation id settles the redemption service's reservation in the folding
// transaction (Settle), so points are held back by exactly one of the two at any time.
package loyalty
