// Package simulate is touchstream's traffic simulator: a reproducible population of a
// telecom operator's customers whose behaviour becomes touchpoint events, sent through
// the ingest gateway's HTTP batch door exactly as the channel systems send them.
//
// # Parameters
//
// deploy/simulator.json (Params) describes the population and its behaviour: size,
// prepaid and enterprise shares, regions, segments, a skewed (lognormal) spend
// calibrated to ARPU ≈ 49 CNY with a fifth of the customers bringing about three
// quarters of the revenue and a few spending 1000 CNY a month or more, the channel
// mix of every kind of interaction, and the daily rates of each behaviour. It is read
// strictly (unknown fields refused), validated with errors naming each field, and
// frozen per version: churn scorers are tuned against this population, never the
// population against a scorer (the tests pin the file's hash).
//
// # Behaviour
//
// Every customer is registered first (the initial base through the CRM import
// channel, later acquisitions through dealers, stores and the online hall), then
// lives day by day: prepaid customers top up in round amounts when their balance runs
// low; postpaid customers get a bill on the 1st and pay it days later (some late,
// some by auto-debit), with occasional adjustments; everyone produces a daily usage
// summary (calibrated to 242 voice minutes and 15.9 GB a month), calls the call
// center (waits and patience per queue and hour, so about 85% of inbound calls are
// answered within 20 seconds and about 5% abandoned), visits stores, complains
// (deadlines by severity, shorter for enterprises' SLAs, resolved later with a
// satisfaction score and sometimes a compensation), answers NPS and CSAT surveys,
// changes handsets and plans, feels regional network incidents, and receives offers.
// Channels correct themselves: a few events are posted twice and the duplicate
// retracted; a few recharges are reversed.
//
// Some customers drift towards leaving, gradually over weeks: usage and spend fall,
// recharges get smaller and rarer, plans are downgraded, care calls and complaints
// rise, satisfaction falls, payments come later; the drift ends in a recovery, a
// port-out request (sometimes turned around by a retention call) and a termination,
// or a termination at the customer's request or for non-payment. Bad experiences
// (abandoned calls, late complaints, incidents) raise the chance to start drifting.
// A few customers leave suddenly, without drifting. The generator keeps the ground
// truth (Truth): who drifted when, and how it ended.
//
// # Reproducibility
//
// The same seed and parameters give the same events, ids included: every customer
// has their own random stream (PCG), so one customer's behaviour never depends on
// another's. Event ids are "sim-<seed>-<customer index>-<n>", customer ids "C" and 12
// digits (a bijection of the index, never a phone number); personal data (names,
// +86 mobile numbers, resident id numbers with valid check digits, addresses) is
// generated and fake. Re-sending a seed re-sends the same ids: the gateway answers
// them as duplicates.
//
// # Time
//
// History mode generates N days of activity ending now, each event at its behaviour
// time; an event older than its channel's late-arrival limit goes through the history
// channel (the CRM import) when that channel may write its type, and is not generated
// otherwise. Live mode stamps each event with the clock's now as it is sent and
// compresses the behaviour timeline to reach the rate; payload times keep their
// distance from the event time, and calendar periods are not compressed: at most one
// usage summary per customer and calendar day and one bill per month, none before the
// registration (the others are dropped and counted). The clock is injected
// (Config.Now).
//
// # Sending
//
// Events are routed to channels by the mix and sent in batches per channel with the
// channel's API key, at the configured rate (a token bucket) with bounded
// concurrency. A customer's events are never in two requests at once, so they reach
// the log in the order they were generated whatever channels carry them. 429 and 503
// are retried after Retry-After, "unknown" and "failed" outcomes with the same ids,
// a batch answered 413 is split; refused events are counted and logged without
// personal data (field names only for payload fields). A 401 stops the run with an
// error. Run returns nil on cancellation once the batches in flight are settled
// (bounded by DrainTimeout).
package simulate
