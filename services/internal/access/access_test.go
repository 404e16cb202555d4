package access_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/access"
)

func TestStaticTokens(t *testing.T) {
	file := `{"comment": "test", "staff": [
	  {"id": "agent-zhang01", "roles": ["agent"], "tokens": [
	    {"id": "2026-01", "sha256": "` + access.HashToken("old-token") + `"},
	    {"id": "2026-07", "sha256": "` + access.HashToken("new-token") + `"}]},
	  {"id": "sup-01", "roles": ["supervisor", "operator"], "tokens": [{"id": "1", "sha256": "` + access.HashToken("sup-token") + `"}]}]}`
	st, err := access.ParseStaticTokens([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("rotation: both tokens of one member work", func(t *testing.T) {
		for _, tok := range []string{"old-token", "new-token"} {
			p, err := st.Authenticate(t.Context(), tok)
			if err != nil || p.StaffID != "agent-zhang01" || !slices.Equal(p.Roles, []access.Role{access.Agent}) {
				t.Errorf("%s: %+v, %v", tok, p, err)
			}
		}
		p, _ := st.Authenticate(t.Context(), "old-token")
		if p.Via != "static:2026-01" {
			t.Errorf("via %q", p.Via)
		}
	})
	t.Run("several roles", func(t *testing.T) {
		p, err := st.Authenticate(t.Context(), "sup-token")
		if err != nil || !p.Has(access.Supervisor) || !p.Has(access.Operator) || p.Has(access.Agent) {
			t.Errorf("%+v, %v", p, err)
		}
		if !p.May("audit_access") || !p.May("ops_redrive") || !p.May(access.PersonalClear) || !p.May("customer") {
			t.Errorf("a supervisor and operator may: %v", p.Allowed())
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		if _, err := st.Authenticate(t.Context(), "nope"); !errors.Is(err, access.ErrUnauthenticated) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("the development file loads", func(t *testing.T) {
		dev, err := access.LoadStaticTokens("../../../deploy/access.json")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range access.AllRoles {
			p, err := dev.Authenticate(t.Context(), "dev-"+string(r)+"-token")
			if err != nil || !p.Has(r) {
				t.Errorf("dev-%s-token: %+v, %v", r, p, err)
			}
		}
	})
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"no staff", `{"staff": []}`, []string{"at least one staff member"}},
		{"unknown field", `{"staff": [], "tokens": []}`, []string{"unknown field"}},
		{"bad member", `{"staff": [{"id": "li@example.test", "roles": ["admin", "agent", "agent"], "tokens": [{"id": "1", "sha256": "dev-agent-token"}]}]}`,
			[]string{"staff[0].id", `roles[0] "admin": unknown role`, `roles[2] "agent": listed twice`, "tokens[0].sha256: must be the 64 lowercase hex digits"}},
		{"shared token", `{"staff": [{"id": "a", "roles": ["agent"], "tokens": [{"id": "1", "sha256": "` + access.HashToken("x") + `"}]},
			{"id": "b", "roles": ["manager"], "tokens": [{"id": "1", "sha256": "` + access.HashToken("x") + `"}]}]}`, []string{"staff[1] (b).tokens[0].sha256: the same token is already staff[0] (a).tokens[0]"}},
		{"no roles, no tokens", `{"staff": [{"id": "a", "roles": [], "tokens": []}]}`, []string{"staff[0] (a).roles: at least one role", "staff[0] (a).tokens: at least one token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := access.ParseStaticTokens([]byte(tc.file))
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not say %q", err, w)
				}
			}
		})
	}
}

// TestMatrix checks the table's shape: every role is used, the capability is the
// supervisor's alone, and the manager and operator see no customer.
func TestMatrix(t *testing.T) {
	used := map[access.Role]bool{}
	for _, route := range access.Routes() {
		needs, ok := access.Needs(route)
		if !ok || len(needs) == 0 {
			t.Errorf("route %s: no role may use it", route)
		}
		for _, r := range needs {
			used[r] = true
		}
	}
	for _, r := range access.AllRoles {
		if !used[r] {
			t.Errorf("role %s is used nowhere", r)
		}
	}
	if needs, _ := access.Needs(access.PersonalClear); !slices.Equal(needs, []access.Role{access.Supervisor}) {
		t.Errorf("personal fields in clear for %v, want the supervisor only", needs)
	}
	for _, r := range []access.Role{access.Manager, access.Operator} {
		p := access.Principal{StaffID: "x", Roles: []access.Role{r}}
		for _, route := range []string{"customer", "search", "timeline", "loyalty_member", "churn_customer", "churn_scores", "stream_customer"} {
			if p.May(route) {
				t.Errorf("%s may use the per-customer route %s", r, route)
			}
		}
	}
	if _, ok := access.Needs("no_such_route"); ok {
		t.Error("an unknown route has roles")
	}
	err := access.Principal{Roles: []access.Role{access.Agent}}.Authorize("no_such_route")
	if err == nil || errors.Is(err, access.ErrForbidden) {
		t.Errorf("an unknown route: %v, want a programming error", err)
	}
}

// TestGate drives the gate over real HTTP: 401 without or with a bad token, 403
// naming the roles, a stream ticket opening a stream only until it expires.
func TestGate(t *testing.T) {
	st, err := access.NewStaticTokens([]access.Staff{
		{ID: "agent-1", Roles: []access.Role{access.Agent}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("agent-token")}}},
		{ID: "ret-1", Roles: []access.Role{access.Retention}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("ret-token")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tickets, err := access.NewTickets(access.RandomTicketKey(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	g := &access.Gate{Tokens: st, Tickets: tickets}
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, p access.Principal, err error) {
		if err != nil {
			w.Header().Set("WWW-Authenticate", access.Challenge(err))
			code := http.StatusUnauthorized
			if errors.Is(err, access.ErrForbidden) {
				code = http.StatusForbidden
			}
			http.Error(w, access.Reason(err), code)
			return
		}
		_, _ = io.WriteString(w, p.StaffID)
	}
	mux.HandleFunc("GET /alerts", func(w http.ResponseWriter, r *http.Request) {
		p, err := g.Authorize(r, "churn_alerts")
		answer(w, p, err)
	})
	mux.HandleFunc("GET /stream/alerts", func(w http.ResponseWriter, r *http.Request) {
		p, err := g.Stream(r, "stream_alerts")
		answer(w, p, err)
	})
	mux.HandleFunc("POST /tickets", func(w http.ResponseWriter, r *http.Request) {
		p, err := g.Authorize(r, "stream_ticket")
		if err != nil {
			answer(w, p, err)
			return
		}
		tk, _ := tickets.Issue(p)
		_, _ = io.WriteString(w, tk)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	do := func(method, path, auth string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b)), res.Header.Get("WWW-Authenticate")
	}
	for _, tc := range []struct {
		name, auth string
		code       int
		body, www  string
	}{
		{"no token", "", 401, "no bearer token", `Bearer realm="touchstream"`},
		{"unknown token", "Bearer guess", 401, "unknown token", `error="invalid_token"`},
		{"basic", "Basic YWdlbnQ6eA==", 401, "must be Bearer", `error="invalid_token"`},
		{"the wrong role", "Bearer agent-token", 403, "needs the role retention or supervisor; the token carries the role agent", `error="insufficient_scope", scope="retention supervisor"`},
		{"the right role", "Bearer ret-token", 200, "ret-1", ""},
		{"scheme in lower case", "bearer ret-token", 200, "ret-1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, www := do("GET", "/alerts", tc.auth)
			if code != tc.code || !strings.Contains(body, tc.body) || !strings.Contains(www, tc.www) {
				t.Errorf("got %d %q (WWW-Authenticate %q), want %d %q (%q)", code, body, www, tc.code, tc.body, tc.www)
			}
		})
	}
	t.Run("stream tickets", func(t *testing.T) {
		code, tk, _ := do("POST", "/tickets", "Bearer ret-token")
		if code != 200 || !strings.HasPrefix(tk, "tkt1.") {
			t.Fatalf("ticket: %d %s", code, tk)
		}
		if code, body, _ := do("GET", "/stream/alerts?ticket="+url.QueryEscape(tk), ""); code != 200 || body != "ret-1" {
			t.Errorf("stream with a ticket: %d %s", code, body)
		}
		if code, _, _ := do("GET", "/alerts?ticket="+url.QueryEscape(tk), ""); code != 401 {
			t.Errorf("an API route with a ticket: %d, want 401 (tickets open streams only)", code)
		}
		if code, _, _ := do("GET", "/stream/alerts?ticket="+url.QueryEscape(tk+"x"), ""); code != 401 {
			t.Errorf("a forged ticket: %d", code)
		}
		_, agentTk, _ := do("POST", "/tickets", "Bearer agent-token")
		if code, body, _ := do("GET", "/stream/alerts?ticket="+url.QueryEscape(agentTk), ""); code != 403 {
			t.Errorf("an agent's ticket on the alert stream: %d %s", code, body)
		}
		if code, body, _ := do("GET", "/stream/alerts", "Bearer ret-token"); code != 200 || body != "ret-1" {
			t.Errorf("stream with a bearer token: %d %s", code, body)
		}
		other, _ := access.NewTickets(access.RandomTicketKey(), time.Minute)
		otherTk, _ := other.Issue(access.Principal{StaffID: "ret-1", Roles: []access.Role{access.Retention}})
		if code, _, _ := do("GET", "/stream/alerts?ticket="+url.QueryEscape(otherTk), ""); code != 401 {
			t.Errorf("a ticket of another key: %d", code)
		}
	})
	t.Run("a ticket expires, and carries its token's expiry", func(t *testing.T) {
		tokenEnd := time.Now().Add(10 * time.Minute).Truncate(time.Second)
		tk, exp := tickets.Issue(access.Principal{StaffID: "ret-1", Roles: []access.Role{access.Retention}, Expires: tokenEnd})
		p, err := tickets.Verify(tk)
		if err != nil || !p.Expires.Equal(tokenEnd) || exp.After(time.Now().Add(time.Minute)) {
			t.Fatalf("%+v %v, ticket ends %v", p, err, exp)
		}
		soon, _ := tickets.Issue(access.Principal{StaffID: "ret-1", Roles: []access.Role{access.Retention}, Expires: time.Now().Add(-time.Second)})
		if _, err := tickets.Verify(soon); !errors.Is(err, access.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
			t.Errorf("a ticket of an expired token: %v", err)
		}
	})
	if _, err := access.NewTickets([]byte("short"), 0); err == nil {
		t.Error("a short ticket key was accepted")
	}
}

func TestLoadStaticTokensNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	_ = os.WriteFile(path, []byte(`{"staff": [{"id": "a", "roles": ["root"], "tokens": [{"id": "1", "sha256": "`+access.HashToken("x")+`"}]}]}`), 0o600)
	_, err := access.LoadStaticTokens(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"root": unknown role`) {
		t.Errorf("got %v", err)
	}
}
