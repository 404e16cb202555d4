package natsauth_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/embedded"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/testkit"
)

// errs collects a connection's asynchronous errors (permission violations).
type errs struct {
	mu  sync.Mutex
	all []string
}

func (e *errs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, err.Error())
}

func (e *errs) saw(sub string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.all {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// world is a real nats-server admitting only the table's identities, with the log
// provisioned by the streams identity, a real key service and a gateway serving the
// NATS door, each on its own identity.
type world struct {
	table natsauth.Table
	seeds map[string]natsauth.Seed
	url   string
	def   streams.Definition
}

const (
	storeSrc  = "urn:touchstream:channel:store"
	dealerSrc = "urn:touchstream:channel:dealer"
)

func testChannels() []gateway.Channel {
	return []gateway.Channel{
		{Name: "store", Source: storeSrc, NATSUser: "channel-store",
			AllowedTypes: []string{"recharge.completed", "customer.registered", "offer.*"},
			APIKeys:      []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k-store")}}},
		{Name: "dealer", Source: dealerSrc, NATSUser: "channel-dealer",
			AllowedTypes: []string{"recharge.completed"}, APIKeys: []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k-dealer")}}},
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{def: streams.Default()}
	var err error
	if w.table, err = natsauth.Build(testChannels(), w.def); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(w.table.Identities))
	for _, id := range w.table.Identities {
		names = append(names, id.Name)
	}
	if w.seeds, err = natsauth.LoadOrCreateSeeds(filepath.Join(t.TempDir(), "nats"), names); err != nil {
		t.Fatal(err)
	}
	pubs := map[string]string{}
	for n, s := range w.seeds {
		pubs[n] = s.Public
	}
	srv, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir(), Users: w.table.Users(pubs)}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	w.url = srv.URL()

	_, js, _ := w.connect(t, natsauth.Streams)
	if _, err := streams.Apply(t.Context(), js, w.def); err != nil {
		t.Fatalf("the streams identity applies the streams: %v", err)
	}

	pool, _ := testkit.Pool(t)
	if err := keystore.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	kek, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.Open(t.Context(), pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	knc, kjs, _ := w.connect(t, natsauth.Keys)
	ks, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: store, NC: knc, Log: testkit.Logger(t),
		Erasures: &keystore.ErasureLog{JS: kjs, Layout: w.def.Layout}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "keys", 20*time.Second, ks.Run)

	gnc, _, _ := w.connect(t, natsauth.Gateway)
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Channels: testChannels(), AckTimeout: 3 * time.Second},
		gateway.Deps{NATS: gnc, Layout: w.def.Layout, Keys: events.NewKeyClient(gnc, events.KeyClientConfig{}), Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "gateway", 20*time.Second, gw.Run)
	return w
}

// connect connects as the named identity, with its seed and its inbox prefix.
func (w *world) connect(t *testing.T, name string) (*nats.Conn, jetstream.JetStream, *errs) {
	t.Helper()
	id, ok := w.table.Get(name)
	if !ok {
		t.Fatalf("no identity %s", name)
	}
	auth, err := nats.NkeyOptionFromSeed(w.seeds[name].Path)
	if err != nil {
		t.Fatal(err)
	}
	e := &errs{}
	nc, err := nats.Connect(w.url, auth, nats.CustomInboxPrefix(id.Inbox()), nats.ErrorHandler(e.handler), nats.Name(name))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, e
}

func event(src, id, typ string) []byte {
	data := map[string]any{"recharge_id": "R1", "amount": map[string]any{"fen": 100, "currency": "CNY"}, "method": "cash"}
	if typ == "customer.registered" {
		data = map[string]any{"name": "张伟测试", "phone": "+8613912345678", "id_type": "resident_id", "id_number": "110101199003074578",
			"customer_type": "individual", "region": "CN-GD-SZ",
			"plan": map[string]any{"id": "4G-58", "kind": "prepaid", "monthly_fee": map[string]any{"fen": 5800, "currency": "CNY"}}}
	}
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": src, "type": typ, "subject": "C1",
		"time": time.Now().Format(time.RFC3339), "dataschema": "https://touchstream.dev/schemas/" + typ + "/v1", "data": data})
	return b
}

// stored asks the door on subject and reports the reply's status.
func stored(t *testing.T, nc *nats.Conn, subject string, body []byte) int {
	t.Helper()
	var m *nats.Msg
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err = nc.Request(subject, body, 5*time.Second); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("request on %s: %v", subject, err)
	}
	var reply gateway.Response
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
	return reply.Status
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// denied publishes on subject and waits for the server's permission violation.
func denied(t *testing.T, nc *nats.Conn, e *errs, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "violation on "+subject, func() bool { return e.saw(`Permissions Violation for Publish to "` + subject + `"`) })
}

// quick is a context for a JetStream API call that must fail: a denied request is
// never answered.
func quick(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestIdentitiesWithLeastPrivilege(t *testing.T) {
	w := newWorld(t)
	tp := func(p int, typ string) string { return w.def.Layout.Subject(p, typ) }

	t.Run("channel", func(t *testing.T) {
		nc, js, e := w.connect(t, "channel-store")
		if got := stored(t, nc, events.ChannelSubject("store", "recharge.completed"), event(storeSrc, "s-1", "recharge.completed")); got != 200 {
			t.Fatalf("the store's own door: status %d, want 200", got)
		}
		// Sealed through the key service, replying to the gateway's own inbox.
		if got := stored(t, nc, events.ChannelSubject("store", "customer.registered"), event(storeSrc, "s-2", "customer.registered")); got != 200 {
			t.Fatalf("a registration (sealed): status %d, want 200", got)
		}
		if got := stored(t, nc, events.ChannelSubject("store", "offer.presented"), event(storeSrc, "s-3", "offer.presented")); got == 0 {
			t.Fatal("a family wildcard type: no answer")
		}
		denied(t, nc, e, events.ChannelSubject("store", "points.redeemed"))     // a type it is not allowed
		denied(t, nc, e, events.ChannelSubject("store", "bill.paid"))           // nor this one
		denied(t, nc, e, events.ChannelSubject("dealer", "recharge.completed")) // another channel's door
		denied(t, nc, e, tp(3, "recharge.completed"))                           // the log itself
		denied(t, nc, e, "$JS.API.STREAM.INFO.TOUCHPOINTS")
		denied(t, nc, e, events.KeySubjectCustomers) // keys are the gateway's business
		if _, err := js.Stream(quick(t), "TOUCHPOINTS"); err == nil {
			t.Error("a channel read the stream's info")
		}
		if _, err := js.OrderedConsumer(quick(t), "TOUCHPOINTS", jetstream.OrderedConsumerConfig{}); err == nil {
			t.Error("a channel created a consumer on the log")
		}
		for _, sub := range []string{"tp.>", natsauth.Inbox(natsauth.Gateway) + ".>", natsauth.Inbox("dealer") + ".>", "_INBOX.>"} {
			if _, err := nc.Subscribe(sub, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "violation on "+sub, func() bool { return e.saw(`Permissions Violation for Subscription to "` + sub + `"`) })
		}
	})

	t.Run("projector", func(t *testing.T) {
		nc, js, e := w.connect(t, natsauth.Projector)
		cons, err := js.OrderedConsumer(t.Context(), "TOUCHPOINTS", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
		if err != nil {
			t.Fatalf("the projector creates an ordered consumer on the log: %v", err)
		}
		if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
			t.Fatalf("the projector reads the log: %v", err)
		}
		s, err := js.Stream(t.Context(), "TOUCHPOINTS")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetMsg(t.Context(), 1); err != nil {
			t.Fatalf("the projector gets a message directly: %v", err)
		}
		if _, err := nc.Request(events.KeySubjectIDs, []byte(`{"ids":["nope"]}`), 5*time.Second); err != nil {
			t.Fatalf("the projector asks for keys by id: %v", err)
		}
		if _, err := js.Publish(t.Context(), "signals.churn.alert_raised", []byte(`{}`)); err != nil {
			t.Fatalf("the projector forwards a signal: %v", err)
		}
		if _, err := js.OrderedConsumer(t.Context(), "SIGNALS", jetstream.OrderedConsumerConfig{}); err != nil {
			t.Fatalf("the projector creates an ordered consumer on SIGNALS: %v", err)
		}
		if _, err := js.Publish(quick(t), tp(3, "recharge.completed"), event(storeSrc, "p-1", "recharge.completed")); err == nil {
			t.Error("the projector appended to TOUCHPOINTS")
		}
		waitFor(t, "violation on tp", func() bool { return e.saw(`Permissions Violation for Publish to "tp.3.recharge.completed"`) })
		denied(t, nc, e, events.KeySubjectCustomers) // cannot mint keys
		denied(t, nc, e, keystore.SubjectErase)
		denied(t, nc, e, "$JS.API.STREAM.DELETE.TOUCHPOINTS")
		denied(t, nc, e, "$JS.API.STREAM.PURGE.TOUCHPOINTS")
	})

	publisher := func(t *testing.T, name, source string) (*events.Publisher, *errs) {
		nc, _, e := w.connect(t, name)
		pub, err := events.NewPublisher(t.Context(), nc, events.WithLayout(w.def.Layout), events.WithSource(source), events.WithAckTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		return pub, e
	}
	t.Run("redeem", func(t *testing.T) {
		pub, e := publisher(t, natsauth.Redeem, "urn:touchstream:service:redeem")
		ok := &events.Event{ID: "r-1", Type: "points.redeemed", Subject: "C1", Time: time.Now(), DataSchema: "https://touchstream.dev/schemas/points.redeemed/v1",
			Data: json.RawMessage(`{"redemption_id":"RD-1","points":10,"partner":"cinema","item":"ticket"}`)}
		if _, err := pub.Publish(t.Context(), ok); err != nil {
			t.Fatalf("the redemption service appends points.redeemed: %v", err)
		}
		other := &events.Event{ID: "r-2", Type: "recharge.completed", Subject: "C1", Time: time.Now(), DataSchema: "https://touchstream.dev/schemas/recharge.completed/v1",
			Data: json.RawMessage(`{"recharge_id":"R1","amount":{"fen":100,"currency":"CNY"},"method":"cash"}`)}
		if _, err := pub.Publish(t.Context(), other); err == nil {
			t.Error("the redemption service appended recharge.completed")
		}
		waitFor(t, "violation on recharge.completed", func() bool { return e.saw(`Permissions Violation for Publish to "tp.`) })
	})

	t.Run("each trusted producer appends its own types only", func(t *testing.T) {
		tests := []struct {
			identity, typ string
			allowed       bool
		}{
			{natsauth.Query, "alert.acknowledged", true},
			{natsauth.Query, "offer.presented", true},
			{natsauth.Query, "points.redeemed", false},
			{natsauth.Clock, "clock.ticked", true},
			{natsauth.Clock, "recharge.completed", false},
			{natsauth.Loyalty, "loyalty.rules_activated", true},
			{natsauth.Churn, "churn.model_activated", true},
			{natsauth.Churn, "loyalty.rules_activated", false},
			{natsauth.Ops, "deadletter.discarded", true},
			{natsauth.Gateway, "customer.erased", false},
			{natsauth.Gateway, "points.redeemed", false},
			{natsauth.Notify, "recharge.completed", false},
			{natsauth.Keys, "customer.erased", false},
		}
		for _, tt := range tests {
			nc, js, e := w.connect(t, tt.identity)
			subject := tp(5, tt.typ)
			if !tt.allowed {
				denied(t, nc, e, subject)
			} else if _, err := js.Publish(t.Context(), subject, []byte(`{}`), jetstream.WithMsgID(tt.identity+tt.typ)); err != nil {
				t.Errorf("%s may not append %s: %v", tt.identity, tt.typ, err)
			}
			nc.Close()
		}
	})

	t.Run("keys", func(t *testing.T) {
		_, js, _ := w.connect(t, natsauth.Keys)
		if _, err := js.OrderedConsumer(t.Context(), "TOUCHPOINTS", jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"tp.*." + events.TypeCustomerErased}}); err != nil {
			t.Fatalf("the key service reads the erasures: %v", err)
		}
		for _, filter := range [][]string{nil, {"tp.*.customer.registered"}, {"tp.>"}} {
			if _, err := js.OrderedConsumer(quick(t), "TOUCHPOINTS", jetstream.OrderedConsumerConfig{FilterSubjects: filter}); err == nil {
				t.Errorf("the key service read the log with filter %v", filter)
			}
		}
	})

	t.Run("notify", func(t *testing.T) {
		_, js, _ := w.connect(t, natsauth.Notify)
		c, err := js.CreateOrUpdateConsumer(t.Context(), "SIGNALS", jetstream.ConsumerConfig{Durable: "desk", AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: "signals.churn.>"})
		if err != nil {
			t.Fatalf("the notifier creates its durable consumer: %v", err)
		}
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("the notifier fetches a signal: %v", err)
		}
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatalf("the notifier acks: %v", err)
		}
		if _, err := js.OrderedConsumer(quick(t), "TOUCHPOINTS", jetstream.OrderedConsumerConfig{}); err == nil {
			t.Error("the notifier read the log")
		}
	})

	t.Run("ops", func(t *testing.T) {
		nc, _, _ := w.connect(t, natsauth.Ops)
		if _, err := nc.Request(keystore.SubjectErase, []byte(`{}`), 5*time.Second); err != nil {
			t.Fatalf("ops reaches the erase subject: %v", err)
		}
		pub, _ := publisher(t, natsauth.Ops, "urn:touchstream:ops")
		ev := &events.Event{ID: "o-1", Type: "customer.erased", Subject: "C1", Time: time.Now(), DataSchema: "https://touchstream.dev/schemas/customer.erased/v1",
			Data: json.RawMessage(`{"reason":"customer_request","operator":"dpo-01","requested_at":"` + time.Now().Format(time.RFC3339) + `"}`)}
		if _, err := pub.Publish(t.Context(), ev); err != nil {
			t.Fatalf("ops appends customer.erased: %v", err)
		}
	})
}

// TestTable checks the table's rules without a server: every single-producer type has
// exactly one owner, no channel type is reserved, the gateway appends exactly the
// channels' types, and only the streams identity administers JetStream.
func TestTable(t *testing.T) {
	chs, def, tab := deployTable(t)
	owners := map[string][]string{}
	for _, id := range tab.Services() {
		for _, p := range id.Publish {
			if typ, ok := strings.CutPrefix(p, def.Layout.Prefix+".*."); ok {
				owners[typ] = append(owners[typ], id.Name)
			}
			if strings.HasPrefix(p, "$JS.API.STREAM.CREATE") || p == "$JS.API.>" {
				if id.Name != natsauth.Streams {
					t.Errorf("%s may administer JetStream (%s)", id.Name, p)
				}
			}
		}
		if id.Name == natsauth.Projector && slices.ContainsFunc(id.Publish, func(p string) bool { return strings.HasPrefix(p, def.Layout.Prefix+".") }) {
			t.Errorf("the projector may append to the log: %v", id.Publish)
		}
	}
	for typ, who := range gateway.ReservedTypes {
		if got := owners[typ]; len(got) != 1 {
			t.Errorf("%s (%s) is appended by %v, want exactly one service", typ, who, got)
		}
	}
	gw, _ := tab.Get(natsauth.Gateway)
	var want []string
	for _, ch := range chs {
		for _, typ := range ch.AllowedTypes {
			if !slices.Contains(want, typ) {
				want = append(want, typ)
			}
		}
		id, ok := tab.Get(ch.NATSUser)
		if !ok || id.Inbox() != natsauth.Inbox(ch.Name) {
			t.Errorf("channel %s: identity %+v", ch.Name, id)
		}
		for _, p := range id.Publish {
			if !strings.HasPrefix(p, "ingest."+ch.Name+".") {
				t.Errorf("channel %s may publish on %s", ch.Name, p)
			}
		}
	}
	slices.Sort(want)
	if !slices.Equal(gw.Types, want) {
		t.Errorf("the gateway appends %v, want the channels' types %v", gw.Types, want)
	}
	for _, typ := range gw.Types {
		if _, reserved := gateway.ReservedTypes[typ]; reserved {
			t.Errorf("the gateway may append the single-producer type %s", typ)
		}
	}

	// A channel whose inbox would be a service's is refused.
	clash := []gateway.Channel{{Name: "gateway", Source: "urn:x", NATSUser: "channel-gateway", AllowedTypes: []string{"recharge.completed"}}}
	if _, err := natsauth.Build(clash, def); err == nil || !strings.Contains(err.Error(), "_INBOX_gateway") {
		t.Errorf("a channel named gateway: %v, want a clash on _INBOX_gateway", err)
	}
	for cmd, want := range map[string]string{"gateway": natsauth.Gateway, "rebuild": natsauth.Ops, "erase": natsauth.Ops, "loyalty": natsauth.Loyalty, "bench": ""} {
		if got := natsauth.ServiceOf(cmd); got != want {
			t.Errorf("ServiceOf(%s) = %q, want %q", cmd, got, want)
		}
	}
}

func TestSeeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	first, err := natsauth.LoadOrCreateSeeds(dir, []string{"gateway", "keys"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := natsauth.LoadOrCreateSeeds(dir, []string{"gateway", "keys"})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range first {
		st, err := os.Stat(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", s.Path, st.Mode().Perm())
		}
		if again[name] != s {
			t.Errorf("%s: %+v the second time, want the same seed %+v", name, again[name], s)
		}
	}
	if first["gateway"].Public == first["keys"].Public {
		t.Error("two identities share a key")
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %04o, want 0700", dir, st.Mode().Perm())
	}
	if err := os.Chmod(first["keys"].Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.LoadOrCreateSeeds(dir, []string{"keys"}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a seed readable by others: %v, want an error", err)
	}
}

// TestRenderedAccountsAreDeployed checks deploy/nats/accounts.conf against the table
// of deploy/channels.json and deploy/streams.json (regenerate it with
// `touchstream nats accounts > deploy/nats/accounts.conf`), and that the nats-server's
// own parser reads it into one user per identity, each with its permissions.
func TestRenderedAccountsAreDeployed(t *testing.T) {
	_, _, tab := deployTable(t)
	var want strings.Builder
	if err := tab.Render(&want); err != nil {
		t.Fatal(err)
	}
	const path = "../../../deploy/nats/accounts.conf"
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("%s is not the table's rendering: run `touchstream nats accounts > deploy/nats/accounts.conf`", path)
	}

	// The server parses it, with the nkeys from the environment.
	pubs := map[string]string{}
	for _, id := range tab.Identities {
		if id.Nkey == "" {
			seed, err := natsauth.LoadOrCreateSeeds(t.TempDir(), []string{id.Name})
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(natsauth.NkeyVariable(id.Name), seed[id.Name].Public)
			pubs[seed[id.Name].Public] = id.Name
		} else {
			pubs[id.Nkey] = id.Name
		}
	}
	t.Setenv("NATS_SYSTEM_PASSWORD", "test-sys")
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Nkeys) != len(tab.Identities) {
		t.Fatalf("%d nkey users, want %d", len(o.Nkeys), len(tab.Identities))
	}
	for _, u := range o.Nkeys {
		id, _ := tab.Get(pubs[u.Nkey])
		if u.Account == nil || u.Account.Name != "TOUCHSTREAM" || u.Permissions == nil {
			t.Fatalf("user %s: account %v, permissions %v", id.Name, u.Account, u.Permissions)
		}
		if diff := cmp.Diff(id.Permissions(), u.Permissions); diff != "" {
			t.Errorf("%s: permissions (-table +file):\n%s", id.Name, diff)
		}
	}
	for _, u := range o.Users {
		if u.Account.Name != "SYS" {
			t.Errorf("password user %s in account %s: only the system user has a password", u.Username, u.Account.Name)
		}
	}
}

// deployTable is the identity table of the development deploy directory.
func deployTable(t *testing.T) ([]gateway.Channel, streams.Definition, natsauth.Table) {
	t.Helper()
	chs, err := gateway.LoadChannels("../../../deploy/channels.json")
	if err != nil {
		t.Fatal(err)
	}
	def, err := streams.Load("../../../deploy/streams.json")
	if err != nil {
		t.Fatal(err)
	}
	tab, err := natsauth.Build(chs, def)
	if err != nil {
		t.Fatal(err)
	}
	return chs, def, tab
}
