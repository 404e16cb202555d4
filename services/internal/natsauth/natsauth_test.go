package natsauth_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/testkit"
)

type identity struct {
	seed []byte
	pub  string
}

func newIdentity(t *testing.T) identity {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	return identity{seed: seed, pub: pub}
}

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

func connect(t *testing.T, url string, id identity, e *errs, opts ...nats.Option) *nats.Conn {
	t.Helper()
	kp, err := nkeys.FromSeed(id.seed)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.Nkey(id.pub, kp.Sign))
	if e != nil {
		opts = append(opts, nats.ErrorHandler(e.handler))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestChannelsReachOnlyTheirOwnDoor(t *testing.T) {
	service, store, dealer := newIdentity(t), newIdentity(t), newIdentity(t)
	channels := []gateway.Channel{
		{Name: "store", Source: "urn:touchstream:channel:store", NATSUser: "channel-store", NATSNkey: store.pub,
			AllowedTypes: []string{"recharge.completed"}, APIKeys: []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k-store")}}},
		{Name: "dealer", Source: "urn:touchstream:channel:dealer", NATSUser: "channel-dealer", NATSNkey: dealer.pub,
			AllowedTypes: []string{"recharge.completed"}, APIKeys: []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k-dealer")}}},
	}
	users, err := natsauth.ChannelUsers(channels)
	if err != nil {
		t.Fatal(err)
	}
	// touchstream's own services: unrestricted in this test.
	users = append(users, &server.NkeyUser{Nkey: service.pub})
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Nkeys: users, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(srv.Shutdown)

	svc := connect(t, srv.ClientURL(), service, nil)
	js, _ := jetstream.New(svc)
	def := streams.Default()
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Channels: channels}, gateway.Deps{NATS: svc, Layout: def.Layout, Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = gw.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)

	event := func(src, id string) []byte {
		return []byte(`{"specversion":"1.0","id":"` + id + `","source":"` + src + `","type":"recharge.completed","subject":"C1",` +
			`"time":"` + time.Now().Format(time.RFC3339) + `","dataschema":"https://touchstream.dev/schemas/recharge.completed/v1",` +
			`"data":{"recharge_id":"R1","amount":{"fen":100,"currency":"CNY"},"method":"cash"}}`)
	}

	storeErrs := &errs{}
	sc := connect(t, srv.ClientURL(), store, storeErrs, natsauth.InboxOption("store"))

	t.Run("a channel stores through its own subject", func(t *testing.T) {
		m, err := sc.Request("ingest.store.recharge", event("urn:touchstream:channel:store", "s-1"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var reply struct {
			Status int `json:"status"`
			Stored int `json:"stored"`
		}
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Status != 200 || reply.Stored != 1 {
			t.Fatalf("reply %s (%v)", m.Data, err)
		}
	})
	t.Run("a channel cannot publish on another channel's subject", func(t *testing.T) {
		_, err := sc.Request("ingest.dealer.recharge", event("urn:touchstream:channel:dealer", "d-1"), time.Second)
		if err == nil {
			t.Fatal("request on another channel's subject was answered")
		}
		waitFor(t, func() bool { return storeErrs.saw(`Permissions Violation for Publish to "ingest.dealer.recharge"`) })
	})
	t.Run("a channel cannot write to the log directly", func(t *testing.T) {
		if err := sc.Publish(def.Layout.Subject(3, "recharge.completed"), event("urn:touchstream:channel:store", "x")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return storeErrs.saw(`Permissions Violation for Publish to "tp.3.recharge.completed"`) })
	})
	t.Run("a channel cannot read the stream", func(t *testing.T) {
		if _, err := sc.Subscribe("tp.>", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return storeErrs.saw(`Permissions Violation for Subscription to "tp.>"`) })
		cjs, _ := jetstream.New(sc)
		if _, err := cjs.Stream(t.Context(), "TOUCHPOINTS"); err == nil {
			t.Fatal("a channel read the stream's info")
		}
	})
	t.Run("a channel cannot listen on others' inboxes", func(t *testing.T) {
		dealerErrs := &errs{}
		dc := connect(t, srv.ClientURL(), dealer, dealerErrs) // default inbox prefix: not allowed
		if _, err := dc.Request("ingest.dealer.recharge", event("urn:touchstream:channel:dealer", "d-2"), time.Second); err == nil {
			t.Fatal("a request without the channel's inbox prefix got an answer")
		}
		if _, err := dc.Subscribe(natsauth.Inbox("store")+".>", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return dealerErrs.saw(`Permissions Violation for Subscription to "_INBOX_store.>"`) })
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
