package natsauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/keystore"
)

// Identity is one NATS user: a channel system or one of touchstream's services.
type Identity struct {
	// Name is the NATS user name, the name of its nkey seed file and, for a service,
	// its inbox token: "gateway", "channel-store".
	Name string
	// Channel is the channel's name for a channel identity; empty for a service.
	Channel string
	// Summary says what the identity is for (rendered as a comment).
	Summary string
	// Commands are the touchstream subcommands that connect as this service.
	Commands []string
	// Types are the event types it may append: directly to the log (tp.*.<type>) for a
	// service, through its own door subject (ingest.<channel>.<type>) for a channel.
	Types []string
	// Publish and Subscribe are the subjects allowed; everything else is denied.
	Publish   []string
	Subscribe []string
	// Responses lets it answer the requests it received (one reply per request), on
	// whatever reply subject they name, without a publish permission on inboxes.
	Responses bool
	// Nkey is the public nkey configured for it (channels.json nats_nkey); empty: not
	// known here (generated for the embedded default, provisioned in production).
	Nkey string
}

// Inbox is the identity's inbox prefix (nats.CustomInboxPrefix): replies reach it
// only there, and no other identity may subscribe to it.
func (id Identity) Inbox() string {
	if id.Channel != "" {
		return Inbox(id.Channel)
	}
	return Inbox(id.Name)
}

// Permissions are the identity's NATS permissions.
func (id Identity) Permissions() *server.Permissions {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(id.Publish)},
		Subscribe: &server.SubjectPermission{Allow: slices.Clone(id.Subscribe)},
	}
	if id.Responses {
		p.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return p
}

// Table is every identity of one installation, derived from its channels and its log
// layout. It is the single source of the permissions the embedded server enforces
// and of the production accounts configuration (Render).
type Table struct {
	Identities []Identity
}

// Service names: the identities of touchstream's own processes.
const (
	Gateway   = "gateway"
	Keys      = "keys"
	Projector = "projector"
	Query     = "query"
	Redeem    = "redeem"
	Clock     = "clock"
	Loyalty   = "loyalty"
	Churn     = "churn"
	Ops       = "ops"
	Notify    = "notify"
	Streams   = "streams"
)

// Producers are the trusted producers' own event types, appended with the SDK under
// their own identity. A type listed here has this one producer among the services;
// every gateway.ReservedTypes entry is here, so no channel and no other service can
// write it. offer.presented and offer.accepted are also channel types (a store records
// an offer at the counter): the gateway appends those for the channels.
var Producers = map[string][]string{
	Query:   {"alert.acknowledged", "offer.presented", "offer.accepted", "alert.closed"},
	Redeem:  {"points.redeemed"},
	Clock:   {"clock.ticked"},
	Loyalty: {"loyalty.rules_activated", "points.adjusted"},
	Churn:   {"churn.model_activated"},
	Ops:     {"deadletter.discarded", events.TypeCustomerErased},
}

// The JetStream API: every request is a publish on $JS.API.<verb>.<stream>...
const jsAPI = "$JS.API."

// streamInfo may look a stream up (streams.Apply finding it unchanged, readiness).
func streamInfo(stream string) []string { return []string{jsAPI + "STREAM.INFO." + stream} }

// readStream may read a stream: direct and API gets of a message, and consumers it
// creates itself (ordered consumers: create, fetch, inspect, delete).
func readStream(stream string) []string {
	return []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream,
		jsAPI + "DIRECT.GET." + stream + ".>",
		jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
	}
}

// Build derives the table from the channels (deploy/channels.json) and the streams
// (deploy/streams.json). It fails on a channel whose identity would collide with a
// service's (same user name or inbox).
func Build(channels []gateway.Channel, def streams.Definition) (Table, error) {
	l := def.Layout
	if err := l.Validate(); err != nil {
		return Table{}, fmt.Errorf("natsauth: %w", err)
	}
	signals := def.SignalsConfig().Name
	logStreams := make([]string, 0, len(l.Streams))
	for _, s := range l.Streams {
		logStreams = append(logStreams, s.Name)
	}
	each := func(f func(string) []string, names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, f(n)...)
		}
		return out
	}
	appends := func(types []string) []string {
		out := make([]string, 0, len(types))
		for _, t := range types {
			out = append(out, l.Prefix+".*."+t)
		}
		return out
	}
	// The gateway appends every type some channel may write.
	var channelTypes []string
	for _, ch := range channels {
		for _, t := range ch.AllowedTypes {
			if !slices.Contains(channelTypes, t) {
				channelTypes = append(channelTypes, t)
			}
		}
	}
	slices.Sort(channelTypes)

	// The key service reads only the erasures of the log, to re-apply them.
	erasedOnly := func(s events.StreamLayout) []string {
		create := jsAPI + "CONSUMER.CREATE." + s.Name + ".*." + l.Prefix + ".*." + events.TypeCustomerErased
		if s.First != 0 || s.Last != l.Partitions-1 {
			// A stream holding a partition range filters on each partition's subject,
			// which the create subject cannot carry: any consumer of its own on the stream.
			create = jsAPI + "CONSUMER.CREATE." + s.Name + ".*"
		}
		return []string{jsAPI + "STREAM.INFO." + s.Name, create, jsAPI + "CONSUMER.INFO." + s.Name + ".*",
			jsAPI + "CONSUMER.MSG.NEXT." + s.Name + ".*", jsAPI + "CONSUMER.DELETE." + s.Name + ".*"}
	}
	var keysJS []string
	for _, s := range l.Streams {
		keysJS = append(keysJS, erasedOnly(s)...)
	}

	services := []Identity{
		{Name: Gateway, Commands: []string{"gateway"}, Types: channelTypes,
			Summary:   "the channels' doors: serves ingest.<channel>.<type>, appends the channels' types, seals with customer keys",
			Publish:   join(appends(channelTypes), []string{events.KeySubjectCustomers}, each(streamInfo, logStreams...), streamInfo(signals)),
			Subscribe: []string{gateway.DefaultSubject}, Responses: true},
		{Name: Keys, Commands: []string{"keys"},
			Summary:   "the key service: answers key requests, reads only the log's customer.erased events",
			Publish:   keysJS,
			Subscribe: []string{events.KeySubjectCustomers, events.KeySubjectIDs, keystore.SubjectErase}, Responses: true},
		{Name: Projector, Commands: []string{"projector"},
			Summary: "folds the log (ordered consumers, direct gets), opens sealed fields by key id, forwards signals; appends nothing to the log",
			Publish: join([]string{streams.SignalsSubjects, events.KeySubjectIDs}, each(readStream, logStreams...), readStream(signals))},
		{Name: Query, Commands: []string{"query"}, Types: Producers[Query],
			Summary: "the query API: opens sealed fields by key id, the desk's commands into the log",
			Publish: join(appends(Producers[Query]), []string{events.KeySubjectIDs})},
		{Name: Redeem, Commands: []string{"redeem"}, Types: Producers[Redeem],
			Summary: "the redemption API: the only producer of points.redeemed",
			Publish: appends(Producers[Redeem])},
		{Name: Clock, Commands: []string{"clock"}, Types: Producers[Clock],
			Summary: "the scheduler: clock.ticked to every partition",
			Publish: appends(Producers[Clock])},
		{Name: Loyalty, Commands: []string{"loyalty"}, Types: Producers[Loyalty],
			Summary: "the club's operators: rule activations and point adjustments",
			Publish: join(appends(Producers[Loyalty]), each(readStream, logStreams...))},
		{Name: Churn, Commands: []string{"churn"}, Types: Producers[Churn],
			Summary: "the retention team's operators: trains from the log, activates models",
			Publish: join(appends(Producers[Churn]), each(readStream, logStreams...))},
		{Name: Ops, Commands: []string{"ops", "status", "dlq", "history", "erase", "rebuild", "replay", "verify"}, Types: Producers[Ops],
			Summary: "operations: status, rebuilds, replays, dead-letter discards, erasures (the only identity that may erase keys)",
			Publish: join(appends(Producers[Ops]), []string{events.KeySubjectIDs, keystore.SubjectErase},
				each(readStream, logStreams...), streamInfo(signals))},
		{Name: Notify, Commands: []string{"notify"},
			Summary: "the notifier: one durable consumer per webhook on SIGNALS",
			Publish: join(readStream(signals), []string{jsAPI + "CONSUMER.DURABLE.CREATE." + signals + ".*", "$JS.ACK." + signals + ".>"})},
		{Name: Streams, Commands: []string{"streams"},
			Summary: "provisions the streams (streams apply): the JetStream API, and nothing else",
			Publish: []string{jsAPI + ">"}},
	}
	for i := range services {
		services[i].Subscribe = append(services[i].Subscribe, services[i].Inbox()+".>")
	}

	t := Table{Identities: services}
	var errs []error
	taken := map[string]string{}
	for _, s := range services {
		taken[s.Name], taken[s.Inbox()] = "service "+s.Name, "service "+s.Name
	}
	for _, ch := range channels {
		if ch.Name == "" || ch.NATSUser == "" {
			errs = append(errs, fmt.Errorf("natsauth: channel %q: a name and a nats_user are required", ch.Name))
			continue
		}
		id := Identity{Name: ch.NATSUser, Channel: ch.Name, Nkey: ch.NATSNkey, Types: slices.Clone(ch.AllowedTypes),
			Summary:   "channel " + ch.Name + " (" + ch.Source + "): its own door subjects, its own inbox",
			Subscribe: []string{Inbox(ch.Name) + ".>"}}
		for _, typ := range ch.AllowedTypes {
			id.Publish = append(id.Publish, events.ChannelSubject(ch.Name, typ))
		}
		for _, k := range []string{id.Name, id.Inbox()} {
			if who, ok := taken[k]; ok {
				errs = append(errs, fmt.Errorf("natsauth: channel %s: %q is already %s's", ch.Name, k, who))
			}
			taken[k] = "channel " + ch.Name
		}
		t.Identities = append(t.Identities, id)
	}
	if err := errors.Join(errs...); err != nil {
		return Table{}, err
	}
	return t, nil
}

// Get returns the identity named name.
func (t Table) Get(name string) (Identity, bool) {
	for _, id := range t.Identities {
		if id.Name == name {
			return id, true
		}
	}
	return Identity{}, false
}

// Services are the identities of touchstream's own processes, in table order.
func (t Table) Services() []Identity {
	var out []Identity
	for _, id := range t.Identities {
		if id.Channel == "" {
			out = append(out, id)
		}
	}
	return out
}

// Users are the nkey users of the table for an embedded server. nkeys maps identity
// names to public nkeys; an identity without one is left out (it cannot connect).
func (t Table) Users(nkeys map[string]string) []*server.NkeyUser {
	var out []*server.NkeyUser
	for _, id := range t.Identities {
		pub := nkeys[id.Name]
		if pub == "" {
			continue
		}
		out = append(out, &server.NkeyUser{Nkey: pub, Permissions: id.Permissions()})
	}
	return out
}

// ServiceOf is the service identity a touchstream subcommand connects as: the
// operations tools (status, dlq, rebuild, ...) connect as ops. Unknown: "".
func ServiceOf(command string) string {
	t, err := Build(nil, streams.Default())
	if err != nil {
		return ""
	}
	for _, s := range t.Services() {
		if slices.Contains(s.Commands, command) {
			return s.Name
		}
	}
	return ""
}

// InboxOption is the connect option a channel system uses so that replies reach it.
func InboxOption(channel string) nats.Option { return nats.CustomInboxPrefix(Inbox(channel)) }

// Inbox is the inbox prefix of a channel's or a service's connection.
func Inbox(name string) string { return "_INBOX_" + name }

func join(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// userToken is a NATS user name as a config or environment token.
func userToken(name string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_").Replace(name))
}
