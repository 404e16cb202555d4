// Package features is the pure core of churn prediction (流失预警): a per-customer
// feature state folded from the log in event time, its feature vectors, and a
// versioned rule scorer. It touches no database, no NATS and no wall clock; the
// churn projection stores a State as a document, takes Snapshots (live and
// monthly, for training) and scores them.
//
// # Event time and windows
//
// A State's Now is the highest event time applied; a clock.ticked event moves it
// when the customer is silent. Activity is kept in daily buckets, one per calendar
// day in the operator's time zone (Zone, Asia/Shanghai, UTC+8), for the last
// DaysKept (120) days before Now's day; older buckets are dropped. Snapshot(asOf)
// computes every feature as of asOf from what happened at or before it: "the last
// 30 days" are the 30 calendar days ending with asOf's day, "the baseline" the 90
// days before those. A late event lands in its own day's bucket (or nowhere when
// that day has left the buckets) and never moves Now back; dated facts keep the
// latest statement by event time (the first, for registration and port-out), ties
// broken by source and id, so arrival order does not change them. The same events
// in the same order give the same state whatever the batch split, and the JSON form
// (the stored form) reads back exactly.
//
// # Features
//
// Missing facts are -1 (unknown), never 0.
//   - spend_30d_yuan: recharges (amount paid) plus bills issued in the last 30 days.
//   - spend_baseline_30d_yuan: the customer's own spend per 30 days over the 90-day
//     baseline, counted from the first event seen when history is shorter; unknown
//     (0) with less than 30 baseline days.
//   - spend_drop, voice_drop, data_drop: 1 - last 30 days / baseline, within [0, 1]
//     (0 without a baseline). Usage is counted on its period's end day.
//   - voice_minutes_30d, data_mb_30d, dropped_calls_30d: usage summaries.
//   - network_incidents_30d: network incidents that reached the customer.
//   - complaints_open, complaints_past_deadline (open and past promised_by),
//     complaints_30d (opened). A resolution seen before its opening closes it.
//   - care_calls_30d (inbound, any queue but retention and telesales),
//     retention_calls_30d (inbound to the retention queue: asking to leave).
//     Outbound calls are the operator's own actions and are not read, so a
//     treatment never feeds back into the score.
//   - last_csat (1-5), last_nps (0-10), survey_detractor (1 when the latest survey
//     answered is NPS 0-6 or CSAT 1-2).
//   - days_since_recharge, days_since_payment, days_since_recharge_or_payment.
//   - tenure_months (whole calendar months since registration),
//     months_to_contract_end (whole months; 0 once ended; -1 without a contract; the
//     latest of customer.registered, customer.updated and plan.changed states it),
//     handset_age_months (from the latest device's purchase date).
//   - downgrades_90d: plan changes with direction downgrade.
//   - port_out_requested (0/1) and days_since_port_out.
//
// subscription.terminated is kept in the State (Terminated) as the training label;
// it is never a feature. A retraction cannot be undone incrementally: the
// projection recomputes the customer from its events without the retracted one.
//
// # Evidence and reasons
//
// Every feature carries the ids of the events behind it: for windowed features the
// MaxEvidence (3) most recent events of that kind inside the window, newest first;
// for facts the event that stated them. The rule scorer (Rules, Load, loaded from
// deploy/churn-rules.json) is versioned and adds, per rule, a weight when a feature
// is within [min, max] or a weight times a ramp's share; the logit is the bias plus
// those contributions and the probability its logistic, always in [0, 1]. A Score's
// reasons are the features whose rules contributed (summed per feature), largest
// first, each with its value, its contribution and its events; with the bias they
// sum exactly to the logit. Alert is set at or above the version's alert threshold;
// hysteresis and cool-down belong to the alert lifecycle, not here.
package features
