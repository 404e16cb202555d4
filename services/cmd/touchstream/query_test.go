package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/touchstream/touchstream/testkit"
)

// TestQueryServes starts `touchstream query` as an operator would: the query API on
// its port, and on the admin listener the metrics and the operations API.
func TestQueryServes(t *testing.T) {
	c := newCLIEnv(t)
	c.foldAll(t) // the read models' tables exist
	port, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- dispatch(ctx, []string{"query", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort)}, c.env, &out)
	}()
	base, admin := fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	testkit.WaitHTTP(t, base+"/v1/openapi.json")
	testkit.WaitHTTP(t, admin+"/metrics")
	get := func(url string) (int, []byte) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if code, body := get(admin + "/v1/ops/status"); code != http.StatusOK || !json.Valid(body) || !strings.Contains(string(body), "customer360_v1") {
		t.Errorf("operations status on the admin listener: %d %s", code, body)
	}
	// The console reads status and dead letters through the query port; nothing else of
	// the operations API is there.
	if code, _ := get(base + "/v1/ops/status"); code != http.StatusOK {
		t.Errorf("operations status for the console on the query port: %d", code)
	}
	if code, _ := get(base + "/v1/ops/customers/C-1/history"); code != http.StatusNotFound {
		t.Errorf("the operations history answered %d on the customer-facing port", code)
	}
	res, err := http.Post(base+"/v1/ops/dead-letters/1/redrive", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusAccepted {
		t.Errorf("a redrive was accepted on the customer-facing port: %d", res.StatusCode)
	}
	if code, body := get(base + "/console/"); code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("the console: %d", code)
	}
	if code, body := get(base + "/v1/loyalty/totals"); code != http.StatusOK {
		t.Errorf("loyalty totals: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("query: %v", err)
	}
	if !strings.Contains(out.String(), "query API listening") {
		t.Errorf("printed %q", out.String())
	}
}
