// Package natsauth is the table of touchstream's NATS identities and their
// permissions: one nkey user per channel system and one per service, each allowed
// only what it must do. The same table configures the embedded server of
// `touchstream run` (every in-process service connects with its own seed) and renders
// the production accounts configuration (deploy/nats/accounts.conf, `touchstream nats
// accounts`), so development exercises exactly the production permissions (ADR 29).
//
// # Channels
//
// A channel identity (channels.json nats_user) may publish only on its own door
// subjects, ingest.<channel>.<type> for each of its allowed types (a family "offer.*"
// is ingest.<channel>.offer.*), and subscribe only to its own inbox prefix
// _INBOX_<channel>. It can therefore neither write as another channel, nor write a type
// it is not allowed, nor reach the log (no stored subject, no JetStream API), nor read
// anyone else's replies. The gateway still checks source and type itself.
//
// # Services
//
// A service publishes only on the stored subjects of its own event types
// (tp.*.<type>): the gateway those of the channels, each trusted producer its
// Producers (points.redeemed only redeem, customer.erased only ops, ...), so every
// single-producer type (gateway.ReservedTypes) has exactly one writer. The projector
// appends nothing to the log: it reads it (ordered consumers, direct gets), forwards
// signals to SIGNALS and asks for keys by id. Only the key service answers key
// requests, and only ops may ask it to erase; the key service reads nothing of the log
// but its customer.erased events. Only the streams identity may use the JetStream API
// at large. Services answering requests (gateway, keys) may publish on the reply
// subjects of requests they received (allow_responses), and nothing else of others'
// inboxes; every service receives replies only on _INBOX_<service>.
//
// Build refuses a channel whose user name or inbox would be a service's. Seeds are
// files, mode 0600 in a 0700 directory, created on first use and never replaced.
package natsauth
