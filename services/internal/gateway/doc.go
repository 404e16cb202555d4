// Package gateway is the ingest gateway: the only door through which untrusted channel
// systems (stores, the call center, dealers, partners) write to the log.
//
// # Doors
//
// HTTP, POST /v1/events, speaks the CloudEvents HTTP binding:
//   - structured mode, Content-Type application/cloudevents+json: one event;
//   - binary mode, Content-Type application/json: attributes in ce-id, ce-source,
//     ce-type, ce-subject, ce-time, ce-dataschema (ce-partition for partition-wide
//     events), percent-decoded; the body is the data;
//   - batch mode, Content-Type application/cloudevents-batch+json: a JSON array.
//
// The channel is identified by its API key (Authorization: Bearer <key>, or
// X-API-Key); keys are configured only as SHA-256 hashes (deploy/channels.json).
//
// NATS request-reply, subject ingest.<channel>.> in queue group touchstream-gateway:
// the second token names the channel (NATS permissions let each channel's identity
// publish only on its own subject); the body is one structured-mode event or a batch
// array. The reply is the same JSON body as over HTTP with "status", the HTTP-equivalent
// code, and it is sent only after the events are stored.
//
// # Guarantees
//
// Every event of a request gets an outcome, by index: stored (with stream and
// sequence), duplicate (the same source and id is already in the log; its sequence),
// refused (field errors: do not retry unchanged), unknown (the acknowledgement did not
// arrive: retrying with the same id is safe) or failed (certainly not stored, for a
// passing reason such as the key service being down: retry later). A batch never
// half-lands silently.
//
// An event is stored only if its source is the channel's own and its type is one the
// channel is allowed; it is then validated, its personal fields sealed, and appended
// through the same events.Door as the SDK's, with its dedup key (a hash of source and
// id) as Nats-Msg-Id. Duplicates are answered from the durable idempotency index (one
// lookup per request, skipped and counted if PostgreSQL is down) or, within the
// stream's duplicate window, by the stream itself. The gateway never writes the index.
//
// Events of one request are sent in request order on one connection, so the events of
// one customer within a batch keep their order in the log.
//
// # Status codes
//
// 200 every event stored or duplicate; 207 some stored or duplicate, others not; 403
// every event forbidden to the channel (source or type); 422 none stored and some
// refused; 503 none stored and none refused (unknown or failed: retry the request), or
// the gateway over its in-flight budget, or NATS down (with Retry-After); 400 a body
// that is not events at all (with the reason); 401 missing or unknown key; 413 a body
// over the limit, a batch over the count limit or the channel's burst; 415 an
// unsupported Content-Type; 429 a channel over its rate limit (with Retry-After); 500
// an internal error, logged with the request id.
//
// Logs never carry request bodies or field values: only request ids, channels, event
// ids and counts. Answers never quote a personal field's value: a refusal reason that
// would is redacted.
package gateway
