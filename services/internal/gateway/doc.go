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
// NATS request-reply, subject ingest.<channel>.<type> (events.ChannelSubject) in queue
// group touchstream-gateway: the second token names the channel and the rest the event
// type, so that NATS permissions let each channel's identity publish only on its own
// subjects and only for its allowed types (services/internal/natsauth); the body is one
// structured-mode event or a batch array of events of that type (an event of another
// type is refused at /type). The reply is the same JSON body as over HTTP with
// "status", the HTTP-equivalent code, and it is sent only after the events are stored.
//
// # Hostile input
//
// Every event is checked as strict JSON before its schema (see strictJSON): a key
// given twice, nesting deeper than MaxDepth, a number beyond a 64-bit float (1e400) or
// beyond ±2^53, invalid UTF-8, a lone UTF-16 surrogate escape and a NUL character are
// refused, each at the JSON pointer of the field (/data/amount/fen), without quoting
// the value. A body that is not one JSON value (trailing data, truncated) is 400.
// Headers are bounded by MaxHeaderBytes (431) and must arrive within HeaderTimeout
// (the connection is closed: slowloris); the body must arrive within BodyTimeout of
// the headers (408, connection closed) and within MaxBodyBytes (413).
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
// that is not events at all (with the reason); 401 missing or unknown key; 408 a body
// that did not arrive in time; 413 a body over the limit, a batch over the count limit
// or the channel's burst; 431 headers over the limit; 415 an
// unsupported Content-Type; 429 a channel over its rate limit (with Retry-After); 500
// an internal error, logged with the request id.
//
// Logs never carry request bodies or field values: only request ids, channels, event
// ids and counts. Answers never quote a personal field's value: a refusal reason that
// would is redacted.
package gateway
