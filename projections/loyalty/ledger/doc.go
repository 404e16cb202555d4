// Package ledger is the pure core of the loyalty club (客户俱乐部) ledger: versioned
// earning rules and a deterministic per-member fold. It touches no database and no
// NATS; the loyalty projection stores a Member as a document and its entries as
// ledger rows, and turns Outcomes into signals.
//
// # Rules
//
// Earning rules are versioned configuration (deploy/loyalty.json, Load). A version
// has an id and says: points per yuan for recharges and bill payments (first matching
// rate by channel source and plan kind, else a default); a multiplier per club tier;
// campaign windows in local time (Asia/Shanghai) with a multiplier and optional event
// types, the highest winning where they overlap; caps per calendar month or year on
// points from spend; a joining bonus (customer.registered) and an anniversary bonus
// per tier; the lot expiry rule; and the tiers. A version becomes active through an
// event in the log with an effective time; a Schedule holds the activations met and
// answers which version is in force at an instant of event time (a Rulebook). A
// rebuild pinned to one version (RuleSet.Pinned) recomputes history under it. Every
// entry and lot records the version that produced it.
//
// # Event time
//
// The fold never reads the wall clock. A member's Now is the highest event time it
// has applied; any event (a clock tick included) moves Now forward and, in time
// order, expires lots, runs tier reviews and grants anniversary bonuses that fell due
// on the way. So a replay, a rebuild or a fold in different batches gives the same
// state, entry for entry. A late event earns under its own time (rate, campaign,
// month, expiry) but cannot move Now back.
//
// # Lots and expiry
//
// Points are held in lots, one per credit (earning, bonus, positive adjustment), each
// with the time earned, its expiry (for example the end of the 12th month after the
// month of earning) and the event that created it. Debits (redemptions, reversals,
// negative adjustments) consume lots oldest expiry first. A lot counts while asOf is
// before its expiry; at expiry its remaining points leave through an expire entry
// dated at the expiry. Balance(asOf) is the sum of lots unexpired at asOf minus any
// overdraft, and equals the sum of all entries at Now.
//
// # Arithmetic
//
// Points are int64, money int64 fen. An earning is floor(fen × rate × tier% ×
// campaign% / 100³), rounded down once per event, then cut to what the caps leave.
// Its base points, floor(fen × rate / 100), count towards tiers. A reversal of part of
// a recharge takes back floor(points × cumulative reversed / amount) minus what
// earlier reversals took, so reversals that add up to the recharge take back all of
// its points, exactly.
//
// # Tiers
//
// Tiers (for example member, silver, gold, platinum) qualify on base points of spend
// over a rolling window (12 months, the current month included), not on the balance:
// spending points never costs a tier, and multipliers and bonuses cannot lift a tier
// by themselves. Upgrades are immediate; a downgrade happens only at a review, at the
// end of each qualification period (each 1 January local time for a yearly review),
// which sets the tier from the window of the months before it.
//
// # Overdraft
//
// The fold never fails for lack of points. A redemption, a reversal or a negative
// adjustment larger than the balance (imported history, points spent before their
// recharge was reversed) consumes what there is and records the rest as an overdraft
// entry; Outcome.Overdraft tells the projection to raise a signal. New points repay
// an overdraft before they form a lot, so while a member owes points it holds no lots.
//
// # Retractions
//
// A retracted event no longer counts, as if never applied. Undoing it incrementally is
// not sound (its lots may have been spent, caps may have withheld later points, tiers
// may have moved), so when a retraction hits an event that touched the ledger, Apply
// sets Outcome.Recompute and the projection rebuilds the member with Recompute over
// the member's events. The recomputed ledger leaves the event out (it counts as a
// clock tick at its time: time passed, nothing else) and keeps a 0-point retract
// entry where the retraction stood. Targets are remembered, so an event that arrives
// after its retraction is skipped the same way. Retractions are final: retracting a
// retraction has no effect.
package ledger
