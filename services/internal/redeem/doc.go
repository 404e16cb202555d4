// Package redeem is the loyalty club's redemption API, the only producer of
// points.redeemed: partner and club systems redeem a member's points for an item,
// with an idempotency key, and may reverse a redemption. The OpenAPI 3.0 document,
// served at GET /v1/loyalty/openapi.json, is the contract; this comment summarises it
// and states the guarantees.
//
// # Endpoints
//
//	POST /v1/loyalty/members/{customer_id}/redemptions  {"idempotency_key", "points", "partner", "item"}
//	GET  /v1/loyalty/redemptions/{id}                   the redemption and its status
//	POST /v1/loyalty/redemptions/{id}/reversal          {"reason"}
//	GET  /v1/loyalty/openapi.json                       the OpenAPI document
//
// The idempotency key is the body's idempotency_key or the Idempotency-Key header
// (both accepted, so plain HTTP clients and clients that follow the IETF draft both
// work; when both are given they must be equal). Keys are per member.
//
// # A redemption, in order
//
//  1. In one PostgreSQL transaction holding the member's advisory lock
//     (pg_advisory_xact_lock on a hash of the customer id; the service takes no other
//     lock, so members never wait for each other): a reservation already made with
//     the key is answered as it is (see Idempotency). Otherwise available = the
//     projected balance (BalanceFunc, loyalty.Available over the serving version of
//     the loyalty read model, as of Config.Now) minus the member's open reservations
//     (pending or published). More points than available is a 409
//     insufficient_points with "available"; else a pending reservation is inserted
//     and the transaction commits. Open reservations are summed BEFORE the balance is
//     read: the projection settles a reservation in the transaction that lowers the
//     balance, so a fold landing between the two reads is counted twice (a refusal
//     too many, for a moment), never missed. Points are never spent twice.
//  2. points.redeemed is published with the SDK under Source, with RedemptionID =
//     ReservationID = event id = the reservation id ("rdm_" + 26 hex digits). The
//     event id being the reservation's, any later publication of it is a duplicate
//     the stream (Nats-Msg-Id) or the durable idempotency index (dedup) recognises.
//  3. The reservation is marked published with the stream sequence and the answer is
//     201 with the redemption.
//
// A reservation counts against the member until the loyalty projection folds its
// event and calls loyalty.Settle in the transaction of that fold. A lost acknowledgement
// (events.ErrAckUnknown) is retried with the same event up to PublishAttempts; if it
// stays unknown the reservation stays pending (still counted) and the answer is 503
// with Retry-After. The client's retry with the same key, or the sweeper in Run
// (every SweepInterval, for work pending longer than PendingGrace), publishes it
// again, asking the dedup index first when the first attempt may lie beyond the
// stream's duplicate window. So a redemption is never lost and never doubled. Only an
// event the contract refuses (events.ErrInvalid; cannot happen for validated input)
// marks the reservation failed, releasing its points; the same happens to a
// reservation still pending after the log's age limit for events (30 days by
// default), since its event can no longer be accepted. A failed reservation that the
// log did hold after all is settled by the fold like any other.
//
// # Idempotency
//
// A repeated key with the same points, partner and item answers 201 with the original
// redemption (same id, current status) and Idempotent-Replayed: true, publishing
// nothing unless the original was left pending. With other values it is a 409
// idempotency_conflict. A key whose redemption failed is a 409 redemption_failed.
//
// # Reversal
//
// A reversal records its reason on the reservation (row lock), then publishes
// event.retracted naming the points.redeemed event, under the same source, with the
// event id "<redemption id>.reversal": the ledger recomputes the member as if the
// redemption never happened, giving the points back once folded. It is idempotent
// (the first reason stands; the event is published at most once, by the same rules as
// redemptions). A redemption still pending answers 409 redemption_pending with
// Retry-After; a failed one 409 redemption_failed.
//
// # Errors
//
// Errors are JSON: {"error": {"code", "message", "parameter"?, "request_id"}}, plus
// "available" for insufficient_points. 400 invalid_parameter names the path
// parameter, header or body field (unknown fields included); 415 when the body is not
// application/json; 413 over MaxBodyBytes; 404 not_found; 405 method_not_allowed with
// Allow; 503 unavailable with Retry-After; anything else is a logged 500. Every
// response carries X-Request-Id. Logs name the route, the customer id and the request
// id, never bodies; no personal data passes through the service.
package redeem
