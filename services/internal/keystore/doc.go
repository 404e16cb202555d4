// Package keystore is touchstream's key service: it holds every customer's data key
// (the AES-256 key that events.Seal encrypts personal fields with) in PostgreSQL, and
// serves the keys over NATS request-reply, so that the gateway, the SDK and the
// projections encrypt and decrypt without a database driver ("keys travel over NATS,
// not SQL").
//
// # Store
//
// A Store (schema "keystore", created by Migrate) implements events.KeySource:
//
//   - One current key per customer. CustomerKeys returns it, creating it if the
//     customer has none: 32 bytes from crypto/rand, with a random UUIDv4 as its id.
//     Creation is safe under concurrency: callers asking for the same new customer at
//     the same time, in one process or many, all get the same key. A batch of up to
//     MaxNames customers costs one database round trip (an INSERT ... ON CONFLICT DO
//     NOTHING from unnest, then a SELECT, pipelined in one implicit transaction).
//   - KeysByID returns keys by id; erased and unknown ids are absent. Erased lists the
//     requested ids that were erased.
//   - Inputs are validated before any SQL: customer ids must satisfy
//     events.ValidCustomerID, key ids are 1 to 64 characters (the kid of a sealed
//     value), at most MaxNames per call. Errors match ErrInvalidRequest, name the field
//     by index (customers[3]) and never echo the value.
//   - Results are all or nothing: a call returns every key asked for (absent only if
//     erased or unknown) or an error, never a partial map.
//
// # Keys at rest
//
// Data keys are never stored in clear. Each is wrapped with AES-256-GCM under the
// master key-encryption key (KEK, a MasterKey): wrapped = nonce || ciphertext || tag,
// with additional data binding the key id and the customer id, so a wrapped key moved
// to another row does not unwrap. Each row names its KEK by fingerprint (kek_id), and
// the store records which KEK is current, so the KEK can be rotated later by
// re-wrapping. Random 96-bit nonces bound one KEK to about 2^32 wraps (keys created),
// far above any customer base.
//
// A wrong KEK never yields a key: Open refuses a master key that is not the store's
// current KEK (ErrWrongMasterKey, naming both fingerprints), and a row that does not
// authenticate under the store's KEK fails the whole call with ErrUnwrap.
//
// The master key lives in a file (LoadMasterKey: base64 of 32 bytes, not accessible to
// other users). LoadOrCreateMasterKey creates one for the embedded development default
// only. Losing the master key loses every data key: back it up, apart from the
// database backups (together they hold the keys in clear).
//
// # Erasure
//
// Erase deletes a customer's current key and records its id in erased_keys (ids only,
// never key material), in one statement. From then on:
//
//   - KeysByID omits the key and Erased reports it; events.Sealer.Reveal of anything
//     sealed with it returns events.ErrErased; read models rebuilt from the log can
//     derive nothing from those fields.
//   - CustomerKeys creates a new key with a new id: new data about the customer may be
//     recorded; old ciphertext stays unreadable. An erased key id is never reused.
//   - Erasing a customer without a current key is a no-op with an empty receipt.
//   - EraseAll erases many customers in one statement, each up to a bound: only keys
//     created at or before it go (a key created later seals data recorded after the
//     erasure). KeyIDs lists what an erasure would delete, for dry runs.
//
// The erasure itself is recorded in the log (a customer.erased event, published by
// the erasure command before it asks for the keys to go; services/internal/erase).
// Service.Run re-applies those events before it answers anything (ServiceDeps.Erasures):
// per stream of the layout, one ordered consumer filtered on the customer.erased
// subjects of the partitions it holds (never a scan of the log), read to its end; every
// key the store still holds that was created up to an erasure's requested_at is erased
// again, and the count is logged ("erasures in the log re-applied", re_applied=N). So
// a key store restored from a backup older than an erasure never serves the erased key.
// While the log or the database cannot be read the service retries and serves nothing:
// refusing to answer is safer than answering with a key that should be gone. Bounds
// compare the database clock (created_at) with the erasure command's clock
// (requested_at): hosts keep NTP time.
//
// What an erasure does not cover, by design of the system around it:
//
//   - Client caches. events.KeyClient caches keys for its CacheTTL (one minute by
//     default). An erasure is complete only once that lifetime has passed since Erase
//     returned: until then a client may still open old values with its cached key, and
//     may even seal new values under the erased key (those are then unreadable too).
//     Keep CacheTTL short; a process that erases calls KeyClient.Forget.
//   - Database copies. PostgreSQL keeps the deleted row's bytes until VACUUM reuses the
//     page, and in WAL, replicas' history and backups. They are wrapped, so they are
//     readable only with the master key: the erasure is complete for backups once the
//     last backup taken before it has expired.
//
// # Service
//
// A Service answers events.KeyRequest on events.KeySubjectCustomers and
// events.KeySubjectIDs (queue group "touchstream-keys", so instances share the load)
// with an events.KeyReply: the keys, Erased for id requests, or Error; and an
// EraseRequest on SubjectErase with an EraseReply (EraseClient is its client). Only the
// erasure command's NATS identity may publish on SubjectErase. Guarantees:
//
//   - Bounded work. Requests are served by a fixed number of workers (default: the
//     database pool's size) from a bounded backlog. When the backlog is full a request
//     is answered "busy" at once; one that waited longer than MaxWait is dropped, since
//     its caller has given up. A flood never exhausts the database pool.
//   - Safe errors. A reply's Error is an ErrInvalidRequest message (for requests that
//     are malformed, oversized — over MaxRequestBytes or MaxNames — or on the wrong
//     subject) or a generic message with a reference to the log line. No key material
//     or personal data appears in replies' errors or in logs.
//   - Reconnection. A NATS disconnection is not an error: the connection reconnects
//     and the subscriptions resume. Run returns an error only if it cannot subscribe or
//     the connection is closed.
//   - Drain. On cancellation Run stops taking requests, answers those it had accepted
//     (bounded by DrainTimeout) and returns nil.
//   - Metrics: touchstream_keys_requests_total{subject,outcome},
//     touchstream_keys_request_seconds{subject} and touchstream_keys_created_total.
package keystore
