package query_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/testkit"
)

// newKeyClientWithoutService is a real key client on the fixture's NATS server, where
// no key service answers.
func newKeyClientWithoutService(t testing.TB, f *fixture) events.KeySource {
	t.Helper()
	return events.NewKeyClient(f.nats.Connect(t), events.KeyClientConfig{Timeout: 200 * time.Millisecond, CacheTTL: -1})
}

func TestConfigValidate(t *testing.T) {
	layout := events.DefaultLayout()
	key := make([]byte, 32)
	tests := []struct {
		name  string
		cfg   query.Config
		wants []string // substrings of the error; none: valid
	}{
		{"defaults with the required fields", query.Config{Layout: layout, PhoneKey: key}, nil},
		{"nothing", query.Config{}, []string{"Layout", "PhoneKey"}},
		{"bad address", query.Config{Layout: layout, PhoneKey: key, Addr: "localhost"}, []string{"Addr"}},
		{"short phone key", query.Config{Layout: layout, PhoneKey: key[:8]}, []string{"PhoneKey"}},
		{"bad targets", query.Config{Layout: layout, PhoneKey: key, Customer360Target: "c360; drop", TimelineTarget: "Timeline"},
			[]string{"Customer360Target", "TimelineTarget"}},
		{"bad tier name", query.Config{Layout: layout, PhoneKey: key, Tiers: []string{"gold", "a b"}}, []string{"Tiers[1]"}},
		{"write timeout below the request timeout", query.Config{Layout: layout, PhoneKey: key, RequestTimeout: time.Minute, WriteTimeout: time.Second},
			[]string{"WriteTimeout"}},
		{"negative timeout", query.Config{Layout: layout, PhoneKey: key, ReadTimeout: -time.Second}, []string{"ReadTimeout"}},
		{"small header limit", query.Config{Layout: layout, PhoneKey: key, MaxHeaderBytes: 100}, []string{"MaxHeaderBytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tt.cfg)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
	t.Run("New needs a database and a key source", func(t *testing.T) {
		_, err := query.New(query.Config{Layout: layout, PhoneKey: key}, query.Deps{})
		if err == nil || !strings.Contains(err.Error(), "Deps.DB") || !strings.Contains(err.Error(), "Deps.Keys") {
			t.Errorf("New: %v", err)
		}
	})
}

// TestRun serves on a listener, then stops on cancellation, letting a request in
// progress finish.
func TestRun(t *testing.T) {
	pool, _ := testkit.Pool(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A viewer function slow enough for the cancellation to arrive mid-request.
	entered := make(chan struct{})
	slow := func(r *http.Request) (access.Principal, error) {
		if r.Header.Get("X-Slow") != "" {
			close(entered)
			time.Sleep(300 * time.Millisecond)
		}
		return access.Principal{StaffID: "agent-1", Roles: []access.Role{access.Agent}}, nil
	}
	if err := audit.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(audit.Config{}, pool, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "audit log", 5*time.Second, log.Run)
	srv, err := query.New(query.Config{Layout: events.DefaultLayout(), PhoneKey: make([]byte, 32), ShutdownTimeout: 5 * time.Second},
		query.Deps{DB: pool, Keys: testkit.NewKeys(), Viewer: slow, Audit: log, Listener: ln, Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	url := "http://" + ln.Addr().String()
	res, err := http.Get(url + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}

	inFlight := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/customers/C-1", nil)
		req.Header.Set("X-Slow", "1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			inFlight <- 0
			return
		}
		res.Body.Close()
		inFlight <- res.StatusCode
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
	// The customer does not exist in an empty database whose read models were never
	// made: the request in flight finished, with an answer rather than a cut connection.
	if code := <-inFlight; code == 0 {
		t.Error("the request in flight was cut off")
	}
	if res, err := http.Get(url + "/v1/openapi.json"); err == nil {
		res.Body.Close()
		t.Error("still serving after Run returned")
	}
}
