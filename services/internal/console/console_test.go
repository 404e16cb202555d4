package console_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/console"
	"github.com/touchstream/touchstream/testkit"
)

// gate is a real gate over two staff members: an agent and the retention desk.
func gate(t *testing.T) *access.Gate {
	t.Helper()
	st, err := access.NewStaticTokens([]access.Staff{
		{ID: "agent-1", Roles: []access.Role{access.Agent}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("agent-token")}}},
		{ID: "ret-1", Roles: []access.Role{access.Retention}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("ret-token")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tickets, err := access.NewTickets(access.RandomTicketKey(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &access.Gate{Tokens: st, Tickets: tickets}
}

// get requests url, with a bearer token unless token is "".
func get(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestValidate(t *testing.T) {
	pool, _ := testkit.Pool(t)
	auth := gate(t).Stream
	for _, tc := range []struct {
		name string
		cfg  console.Config
		want []string // substrings of the error; none: valid
	}{
		{"defaults", console.Config{DB: pool, Authorize: auth}, nil},
		{"no database, nobody to ask", console.Config{}, []string{"DB: required", "Authorize: required"}},
		{"bad targets", console.Config{DB: pool, Authorize: auth, TimelineTarget: "Timeline;", ChurnTarget: "x-y"}, []string{"TimelineTarget", "ChurnTarget"}},
		{"bounds", console.Config{DB: pool, Authorize: auth, PollInterval: time.Millisecond, Heartbeat: time.Millisecond, Window: 501, AlertLookback: -time.Hour},
			[]string{"PollInterval", "Heartbeat", "Window", "AlertLookback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := console.New(tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New: nil, want an error naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func serve(t *testing.T, c *console.Console) string {
	t.Helper()
	mux := http.NewServeMux()
	for pattern, h := range c.Routes() {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAssets: the embedded application is served with its types and a same-origin
// content security policy; nothing outside assets/ is.
func TestAssets(t *testing.T) {
	pool, _ := testkit.Pool(t)
	c, err := console.New(console.Config{DB: pool, Authorize: gate(t).Stream})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, c)
	for _, tc := range []struct {
		path, status, ctype, contains string
	}{
		{"/console/", "200 OK", "text/html", `<script type="module" src="app.js">`},
		{"/console/app.js", "200 OK", "text/javascript", "import { lineChart, barChart } from './charts.js'"},
		{"/console/charts.js", "200 OK", "text/javascript", "export function lineChart"},
		{"/console/styles.css", "200 OK", "text/css", ":root"},
		{"/console/nothing.js", "404 Not Found", "", ""},
		{"/console/../console.go", "404 Not Found", "", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.Status != tc.status {
				t.Fatalf("status %s, want %s", res.Status, tc.status)
			}
			if tc.ctype == "" {
				return
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.ctype) {
				t.Errorf("Content-Type %q, want %s", got, tc.ctype)
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
		})
	}
}

// TestStreamLifecycle: a stream rejects a bad customer id, stays open with
// heartbeats while its read model is missing (a failed poll is retried, never the
// end of the stream), and ends when the console stops.
func TestStreamLifecycle(t *testing.T) {
	pool, _ := testkit.Pool(t)
	g := gate(t)
	c, err := console.New(console.Config{DB: pool, Authorize: g.Stream, PollInterval: 20 * time.Millisecond, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	base := serve(t, c)

	res := get(t, base+"/v1/stream/customers/bad%20id", "ret-token")
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("bad id: %d, want 400", res.StatusCode)
	}
	for _, tc := range []struct {
		name, path, token string
		status            int
	}{
		{"no token", "/v1/stream/alerts", "", http.StatusUnauthorized},
		{"an unknown token", "/v1/stream/customers/C-1", "guess", http.StatusUnauthorized},
		{"an agent on the alerts", "/v1/stream/alerts", "agent-token", http.StatusForbidden},
		{"a forged ticket", "/v1/stream/alerts?ticket=tkt1.e30.AAAA", "", http.StatusUnauthorized},
	} {
		res := get(t, base+tc.path, tc.token)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || !strings.Contains(string(b), `"error"`) || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", tc.name, res.StatusCode, b)
		}
	}
	t.Run("a stream ends when its token expires", func(t *testing.T) {
		tk, _ := g.Tickets.Issue(access.Principal{StaffID: "ret-1", Roles: []access.Role{access.Retention}, Expires: time.Now().Add(1500 * time.Millisecond)})
		res := get(t, base+"/v1/stream/alerts?ticket="+tk, "")
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%d", res.StatusCode)
		}
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, res.Body); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream outlived its token")
		}
	})

	agentTicket, _ := g.Tickets.Issue(access.Principal{StaffID: "agent-1", Roles: []access.Role{access.Agent}})
	for _, path := range []string{"/v1/stream/customers/C-1?ticket=" + agentTicket, "/v1/stream/alerts"} {
		res := get(t, base+path, "ret-token")
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("%s: %d %s", path, res.StatusCode, ct)
		}
		lines := bufio.NewScanner(res.Body)
		want := []string{"retry: 2000", ": open", "", ": ping"}
		for i, w := range want {
			if !lines.Scan() || lines.Text() != w {
				t.Fatalf("%s: line %d %q, want %q (%v)", path, i, lines.Text(), w, lines.Err())
			}
		}
		if strings.HasPrefix(path, "/v1/stream/alerts") {
			stop()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
			done := make(chan struct{})
			go func() {
				for lines.Scan() {
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the stream did not end when the console stopped")
			}
		}
	}
}
