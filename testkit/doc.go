// Package testkit starts the real dependencies touchstream's tests run against: an
// embedded NATS JetStream server per test (its own temporary store, its own port, so no
// test sees another's streams) and a fresh PostgreSQL database per test (created from
// DATABASE_URL, dropped when the test ends).
//
// There are no fakes here. A test that cannot reach PostgreSQL fails; it never skips.
package testkit
