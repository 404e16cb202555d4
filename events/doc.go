// Package events is touchstream's event contract and the SDK that channel systems and
// trusted producers import to append to the log.
//
// # Contract
//
// An Event is a CloudEvents 1.0 envelope: ID (unique within Source; NewEvent mints a
// UUIDv7), Source (the producing system), Type (a stable "noun.verb" name),
// Subject (the opaque customer id, [A-Za-z0-9_-]{1,64}, never a phone number), Time
// (when it happened, RFC 3339 with offset), DataSchema (the schema URI, which carries
// the major version) and Data. Partition-wide events (clock ticks) have no subject and
// name a Partition; NewPartitionEvents builds one per partition with one id.
//
// The payload types (CustomerRegistered, RechargeCompleted, ...) mirror the JSON
// Schemas of the schemas module field for field; money is integer fen with a currency.
// Personal fields are of type Personal: clear in a producer's hands (Clear), sealed in
// the log, and never printed.
//
// # Doors
//
// Door is the one code path both doors share, the gateway for untrusted channels and
// Publisher for trusted producers: it validates each event (Validator.CheckInput: the
// envelope, the payload against the input form of its schema, strict decoding into the
// Go type, the time against the late-arrival and clock-skew limits), seals every
// personal field with the customer's data key (AES-256-GCM, additional data binding key,
// customer and field; keys fetched from a KeySource such as KeyClient, for all the
// customers of a batch in one request), encodes the structured-mode JSON, and computes
// the subject <prefix>.<partition>.<type> (Partition: FNV-1a of the customer id, the
// server's partition() mapping) and the dedup key, a hash of source and id sent as
// Nats-Msg-Id. The payload is stored as sent, compacted, each personal value replaced
// in place by its sealed form (a payload that repeats a key is encoded again from its
// decoded value instead, so that no copy of a personal value escapes). Refusals are FieldErrors naming each field by JSON
// pointer; they never quote a personal value.
//
// Validation reads each payload once, without building Go values, and decides on that
// reading what it can decide exactly (fastschema.go, goshape.go); a payload it is not
// sure of (an escaped string under a pattern, 1.0 for an integer, a repeated key) is
// decided by the jsonschema library and a strict decode into the Go type, which also
// give the reasons of every refusal. Both paths accept exactly the same events.
//
// # Publishing
//
// Publisher.Publish appends one event and waits for the stream's acknowledgement;
// PublishBatch appends many asynchronously with a bounded number in flight and
// returns one Result per event: its stream sequence, whether it was a duplicate (of
// which sequence), or why it was not stored. ErrAckUnknown means the outcome is
// unknown: publishing again with the same source and id is safe. Events of one
// customer are sent in the order given. A publisher without a KeySource refuses events
// with personal fields rather than write them in clear.
//
// PublishBatch prepares a batch in chunks, sending each while the next is prepared;
// the keys of a batch are requested per group of at least 250 events, the requests in
// flight together. Messages go out over core NATS with JetStream's publish protocol
// (a reply subject per message under one subscription of the publisher), which is
// what jetstream's PublishMsgAsync does, without its per-message future and timer.
//
// # Reading
//
// Consumers decode the structured JSON (Event.UnmarshalJSON), validate the stored form
// (Validator.CheckStored) and decode the payload (Decode); Validator.ReadStored does
// the three in one parse of the message, as the projections' decoder reads the log.
// Sealer.Reveal opens the personal fields for a caller allowed to see them; a field
// whose key was erased comes back null with ErrErased.
//
// # Versions and upcasting
//
// A type's major version travels in the dataschema, never in its type. The doors
// accept every version in the catalog; NewEvent writes the version of the Go type it
// is given, the current one by default (RechargeCompleted is recharge.completed v2;
// RechargeCompletedV1 remains for producers not yet moved). The log keeps every event
// as written, so CheckStored accepts each stored version against its own stored form.
//
// Consumers read every version as the current one: Decode upcasts an older payload
// before decoding it, through the registry of upcasters (upcast.go), one JSON-to-JSON
// step per version (v1 to v2, v2 to v3...), so that only the current version needs a
// Go type in consumers' hands. An upcaster must leave personal values where they are
// (a sealed value is bound to its JSON pointer). UpcastEvent does the same for a whole
// envelope, for tools that show history in today's shape. A payload an upcaster cannot
// read is an ErrInvalid error, parked like any other.
//
// A published schema only widens in place; a narrowing (a new required field, a
// removed one, a narrower value) is a new major version with an upcaster that lists
// the differences it resolves. The compatibility test (compat_test.go) enforces it on
// the schemas, on every example and on a frozen corpus of stored events under
// testdata (docs/adr/0014).
//
// The package depends on nats.go and the schemas module only: no database driver, no
// NATS server (a test enforces it).
package events
