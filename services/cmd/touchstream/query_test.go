package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/embedded"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/testkit"
)

// TestQueryServes starts `touchstream query` as an operator would: the query API on
// its port, and on the admin listener the metrics and the operations API, every route
// asking for a token of deploy/access.json's development staff.
func TestQueryServes(t *testing.T) {
	c := newCLIEnv(t)
	c.foldAll(t) // the read models' tables exist
	port, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- dispatch(ctx, []string{"query", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort), "--access-file", c.deployDir + "/access.json"}, c.env, &out)
	}()
	base, admin := fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	testkit.WaitHTTP(t, base+"/v1/openapi.json")
	testkit.WaitHTTP(t, admin+"/metrics")
	do := func(method, url, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	get := func(url, token string) (int, []byte) { t.Helper(); return do(http.MethodGet, url, token) }
	const operator = "dev-operator-token"
	if code, body := get(admin+"/v1/ops/status", operator); code != http.StatusOK || !json.Valid(body) || !strings.Contains(string(body), "customer360_v1") {
		t.Errorf("operations status on the admin listener: %d %s", code, body)
	}
	// The operations API takes the operator's token; metrics and health stay open.
	for _, tc := range []struct {
		method, url, token string
		want               int
	}{
		{"GET", admin + "/v1/ops/status", "", http.StatusUnauthorized},
		{"GET", admin + "/v1/ops/status", "dev-supervisor-token", http.StatusForbidden},
		{"GET", admin + "/v1/ops/dead-letters", "dev-agent-token", http.StatusForbidden},
		{"GET", admin + "/v1/ops/dead-letters", operator, http.StatusOK},
		{"GET", admin + "/v1/ops/dead-letters/1", operator, http.StatusNotFound},
		{"POST", admin + "/v1/ops/dead-letters/1/redrive", "dev-manager-token", http.StatusForbidden},
		{"POST", admin + "/v1/ops/dead-letters/1/redrive", operator, http.StatusNotFound},
		{"GET", admin + "/v1/ops/customers/C-1/history", "dev-retention-token", http.StatusForbidden},
		{"GET", admin + "/v1/ops/customers/C-1/history", operator, http.StatusOK},
		{"GET", admin + "/v1/ops/openapi.json", "", http.StatusOK},
		{"GET", admin + "/metrics", "", http.StatusOK},
		{"GET", admin + "/healthz", "", http.StatusOK},
		{"GET", admin + "/readyz", "", http.StatusOK},
		// The console reads status and dead letters through the query port, as an operator.
		{"GET", base + "/v1/ops/status", operator, http.StatusOK},
		{"GET", base + "/v1/ops/status", "dev-agent-token", http.StatusForbidden},
		{"GET", base + "/v1/ops/status", "", http.StatusUnauthorized},
		// The query API: a token's roles decide.
		{"GET", base + "/v1/loyalty/totals", "dev-manager-token", http.StatusOK},
		{"GET", base + "/v1/loyalty/totals", "dev-agent-token", http.StatusForbidden},
		{"GET", base + "/v1/loyalty/totals", "", http.StatusUnauthorized},
		{"GET", base + "/v1/audit/access", operator, http.StatusOK},
		{"GET", base + "/v1/session", "dev-agent-token", http.StatusOK},
	} {
		if code, body := do(tc.method, tc.url, tc.token); code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d: %s", tc.method, tc.url, tc.token, code, tc.want, body)
		}
	}
	// Nothing else of the operations API is on the customer-facing port.
	if code, _ := get(base+"/v1/ops/customers/C-1/history", operator); code != http.StatusNotFound {
		t.Errorf("the operations history answered %d on the customer-facing port", code)
	}
	if code, _ := do(http.MethodPost, base+"/v1/ops/dead-letters/1/redrive", operator); code == http.StatusOK || code == http.StatusAccepted {
		t.Errorf("a redrive was accepted on the customer-facing port: %d", code)
	}
	if code, body := get(base+"/console/", ""); code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("the console: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("query: %v", err)
	}
	if !strings.Contains(out.String(), "query API listening") {
		t.Errorf("printed %q", out.String())
	}
}

// TestQueryNeedsATokenSource: without a static token file or an identity provider the
// query API refuses to start, naming the flags.
func TestQueryNeedsATokenSource(t *testing.T) {
	c := newCLIEnv(t)
	_, err := c.run(t, "query", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--access-file") || !strings.Contains(err.Error(), "--oidc-issuer") {
		t.Errorf("got %v", err)
	}
	_, err = c.run(t, "query", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--oidc-issuer", "https://idp.example.test")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "Audience") {
		t.Errorf("an incomplete identity provider: %v", err)
	}
}

// TestQueryOperationsAsTheOpsIdentity runs the query service on a server that enforces
// the identities (as in production): with --ops-nats-creds its operations API reads
// the streams as the ops identity (the query identity may not: the server refuses
// its JetStream API requests, which then time out).
func TestQueryOperationsAsTheOpsIdentity(t *testing.T) {
	c := newCLIEnv(t)
	c.foldAll(t)
	tab, err := identityTable(&config.Common{DeployDir: c.deployDir})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, id := range tab.Identities {
		names = append(names, id.Name)
	}
	seeds, err := natsauth.LoadOrCreateSeeds(t.TempDir(), names)
	if err != nil {
		t.Fatal(err)
	}
	pubs := map[string]string{}
	for _, id := range tab.Identities {
		pubs[id.Name] = seeds[id.Name].Public
		if id.Nkey != "" {
			pubs[id.Name] = id.Nkey
		}
	}
	srv, err := embedded.Start(embedded.Config{Port: testkit.FreePort(t), StoreDir: t.TempDir(), Users: tab.Users(pubs)}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	snc, err := natsconn.Dial(natsconn.Config{URL: srv.URL(), Creds: seeds[natsauth.Streams].Path, Identity: natsauth.Streams, Name: "test-streams"}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer snc.Close()
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Apply(t.Context(), sjs, c.def); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case "TOUCHSTREAM_NATS_URL":
			return srv.URL()
		case "TOUCHSTREAM_NATS_CREDS":
			return seeds[natsauth.Query].Path
		}
		return c.env(k)
	}
	status := func(t *testing.T, extra ...string) (int, string) {
		port, adminPort := testkit.FreePort(t), testkit.FreePort(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		args := append([]string{"query", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort), "--access-file", c.deployDir + "/access.json"}, extra...)
		go func() { done <- dispatch(ctx, args, env, io.Discard) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("query: %v", err)
			}
		}()
		admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
		testkit.WaitHTTP(t, admin+"/metrics")
		req, _ := http.NewRequest(http.MethodGet, admin+"/v1/ops/status", nil)
		req.Header.Set("Authorization", "Bearer dev-operator-token")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := status(t, "--ops-nats-creds", seeds[natsauth.Ops].Path); code != http.StatusOK || !strings.Contains(body, `"TOUCHPOINTS"`) {
		t.Errorf("status as the ops identity: %d %s, want 200 with the TOUCHPOINTS stream", code, body)
	}
}
