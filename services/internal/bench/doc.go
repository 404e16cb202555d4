// Package bench is `touchstream bench`: it measures touchstream's hot paths on the
// machine it runs on and prints the figures as tables, each beside the raw limit of the
// same machine measured in the same run, with the ratio.
//
// # What it sets up
//
// Everything is private to one run: an embedded nats-server (JetStream file store in
// a temporary directory, a random loopback port, never 4222), a fresh PostgreSQL
// database (created at the start, dropped WITH (FORCE) at the end, like
// testkit.Database), the real key service (keystore.Service over NATS, its store in
// that database, a throwaway master key) and the log stream provisioned from
// deploy/streams.json with streams.Apply. A suite that needs an empty log deletes the
// stream and applies it again, so each measured row starts from the same state.
//
// # Suites
//
//   - ingest: raw JetStream async publish of pre-built stored messages (same subjects,
//     same Nats-Msg-Id, bounded in flight) against the SDK (events.Publisher, validation
//     off and on), the SDK with personal fields sealed through the key service, and the
//     gateway's HTTP door (gateway.New on a real listener, several clients, batches of
//     500, a dev API key from deploy/channels.json).
//   - projector: a reproducible history (every customer registered with sealed
//     personal fields, then activity) preloaded by raw publish of messages prepared by
//     an events.Door with the real key service; the real projector group (timeline,
//     customer360 with the phone index, dedup: the command's buildProjector) folds it
//     with Runner.CatchUp, beside a raw ordered-consumer fetch of the same messages and
//     raw PostgreSQL unnest upserts and COPY.
//   - query: profile reads through the real query API at an open-loop rate over the
//     projector's population, beside raw PostgreSQL point reads and raw key lookups.
//   - e2e: publish → visible latency with the gateway, the projector (Runner.Run) and
//     the query API running, beside raw JetStream publish → consumer delivery.
//   - console: the web console's pages over the projector's data set (its loyalty,
//     churn and service-level read models folded first): each page's requests as
//     app.js makes them, step by step, through the query service with the console
//     mounted, open loop, beside a raw HTTP round trip to the same server and raw
//     PostgreSQL point reads; then each page loaded in headless Chromium, timed in
//     the page until its data is rendered.
//   - rebuild and loyalty: a blue/green rebuild of the data set, and the loyalty ledger
//     with the redemption API at 200 requests/s.
//   - scale: the data set folded by one, two and three projector instances sharing the
//     partitions, with the batch sizes and commits that explain the difference.
//   - churn (last: it empties the log): the simulator's population over months with
//     daily clock ticks, folded by the timeline index and the churn projection beside
//     the same events folded in memory, both models trained from the log, and both
//     fitted on one million snapshot rows.
//
// # Method
//
// Inputs are pinned: a seed (same seed, same events), event times from a fixed epoch
// with a pinned validation clock, fixed sizes. Throughput runs of the ingest suite are
// the best of interleaved rounds after a warm-up, with their spread; latencies are
// measured from when each request was due in an open loop, so a slow server shows its
// queueing. After the projector's catch-up the database is settled (VACUUM (ANALYZE),
// CHECKPOINT) so that the live suites measure a steady state, not the autovacuum of
// millions of fresh rows. Every table states the CPU it used (this process, embedded
// nats-server included, and the whole machine), PostgreSQL's buffer and WAL activity
// where it matters, and the load average, so a disturbed figure can be recognised.
// The services log at warn (no access logs) so that progress stays readable.
//
// Figures are measured, never asserted: the bench prints targets beside figures and
// leaves the judgement to the reader.
package bench
