// Package notify delivers derived signals (tier changes, churn alerts and their
// transitions, SLA breaches) from the JetStream stream SIGNALS to webhooks: the
// retention desk and other systems that must act on them.
//
// # Configuration
//
// deploy/webhooks.json lists the webhooks (Load): {name, url, types, secret_env,
// timeout, start}. types are signal type prefixes of whole tokens ("churn" matches
// churn.alert_raised; empty: every signal). secret_env is the NAME of the environment
// variable holding the webhook's HMAC secret (at least 16 bytes); secrets are never in
// the file, and Config.Validate reports an unset one by webhook and field. timeout
// bounds one POST (default 10s). start is where a new webhook begins: "new" (default,
// signals stored from its creation on) or "all" (everything SIGNALS still holds, up to
// 30 days); it is read only when the durable is first created.
//
// # Delivery
//
// Each webhook has its own durable consumer on SIGNALS, notify-<name>, filtered on
// signals.<prefix> and signals.<prefix>.> for each of its types, with explicit acks,
// one unacknowledged signal at a time (MaxAckPending 1) and a bounded ack wait
// (Config.AckWait, by default the whole retry budget plus 10s). One failing endpoint
// therefore never delays another. Signals are consumed through a watermill router
// (watermill-nats v2, JetStream mode) with the middlewares CorrelationID (the signal
// id), PoisonQueue (parking, below), Retry (exponential backoff), Timeout (the
// webhook's timeout, per attempt) and Recoverer (a panic is an error, retried then
// parked); one consumer handler per webhook POSTs the signal.
//
// The subscriber is watermill-nats' jetstream package (nats.go's jetstream API): its
// resource initializer binds each handler to the webhook's durable, which Run creates
// or updates first. It drains its connection when it closes, so Run opens its own,
// with the options of the connection in Deps.
//
// A delivery is a POST of the signal exactly as stored in the stream (the Signal JSON
// of projections/outbox) with the headers
//
//	Content-Type: application/json
//	Idempotency-Key: <signal id>
//	X-Touchstream-Signal: <signal type>
//	X-Touchstream-Delivery-Attempt: <n>
//	X-Touchstream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// n counts the POSTs of one delivery from the stream (1 first, 2 the first retry, ...;
// a redelivery of a parked signal continues from its recorded attempts). A 2xx ends the
// delivery and the signal is acknowledged on the stream. 408, 429, 5xx, a network
// error or a timeout is transient: retried after InitialInterval, then Multiplier times
// longer each time up to MaxInterval (±Jitter), MaxRetries times; a Retry-After in
// seconds or as an HTTP date replaces the next interval, capped at MaxInterval. Any
// other status (a 4xx: the receiver refuses the signal; a 3xx: redirects are not
// followed) is permanent and parked at once, without retries.
//
// # Guarantees
//
// Delivery is at least once. A signal is acknowledged on the stream only after a 2xx
// or after its row is written to the parked table; a notifier that stops or crashes
// mid-delivery leaves it unacknowledged, and the stream hands it out again (after
// AckWait), so a receiver may see a signal twice. The Idempotency-Key is the signal id,
// deterministic for a fact (projections/outbox.NewID): receivers deduplicate on it.
//
// Order: per webhook, signals are delivered one at a time in stream order (SIGNALS
// holds them in the outbox's commit order), a retry holding back the signals behind
// it. Order is not guaranteed across a redelivery (after a crash, the unacknowledged
// signal comes again after AckWait) or a parked signal redelivered by hand later.
//
// Receivers check the signature with Verify: recompute the HMAC over
// "<t>.<body>" with the raw body, compare in constant time, and refuse a timestamp
// outside a tolerance (five minutes is usual) to stop replays.
//
// On shutdown (Run's context cancelled) the durables stop handing out signals, the
// delivery in progress finishes (at most CloseTimeout, retries included), and Run
// returns nil. A delivery still unfinished then is abandoned, neither acknowledged nor
// parked: the stream hands it out again after AckWait, which also delays the
// signals behind it by up to AckWait after a restart.
//
// # Parking
//
// The poison queue is the table notify.parked (Migrate; PRIMARY KEY (webhook,
// signal_id)): webhook, signal id and type, the body, the last error, the attempts and
// when it was parked. Parking is the watermill Publisher the PoisonQueue middleware
// writes to. A delivery cut short by shutdown is not parked. Parked lists rows;
// Notifier.Redeliver posts one now (deleting it on a 2xx); Discard deletes one. The
// touchstream notify command exposes them (parked, redeliver, discard). An erasure
// deletes the customer's parked deliveries (PurgeCustomer): a signal about an erased
// customer is not delivered later.
//
// # Logs and metrics
//
// Logs carry webhook names, signal ids and types, attempts and statuses, never a
// signal's body (signals carry no personal data, but their bodies are not logged
// either). Metrics, through the injected registry:
// touchstream_notify_deliveries_total{webhook, outcome=delivered|retried|parked|redelivered}
// and touchstream_notify_post_seconds{webhook}.
package notify
