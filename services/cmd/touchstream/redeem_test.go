package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/testkit"
)

// `touchstream redeem --help` says what the command serves and lists its flags.
func TestRedeemHelp(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(t.Context(), []string{"redeem", "--help"}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "help") {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"/v1/loyalty/members/{customer_id}/redemptions", "-addr", "-ack-timeout", "-nats-url", "-admin-addr"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// `touchstream redeem` serves the API over the log and the serving loyalty read model,
// with its admin listener, and stops cleanly when cancelled.
func TestRedeemServes(t *testing.T) {
	c := newCLIEnv(t)
	rs, err := ledger.Load(filepath.Join(c.deployDir, "loyalty.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := loyalty.New(loyalty.Options{Target: "loyalty_v1", Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Migrate(t.Context(), c.pool); err != nil {
		t.Fatal(err)
	}
	port, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- dispatch(ctx, []string{"redeem", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort)}, c.env, &out)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testkit.WaitHTTP(t, base+"/v1/loyalty/openapi.json")
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))

	res, err := http.Post(base+"/v1/loyalty/members/C-NEW/redemptions", "application/json",
		strings.NewReader(`{"idempotency_key":"k1","points":10,"partner":"JD","item":"mug"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var e struct {
		Error     struct{ Code string }
		Available *int64
	}
	if err := json.Unmarshal(body, &e); err != nil || res.StatusCode != http.StatusConflict || e.Error.Code != "insufficient_points" ||
		e.Available == nil || *e.Available != 0 {
		t.Errorf("a member without points: %d %s", res.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if !strings.Contains(out.String(), "redemption API listening") {
		t.Errorf("printed %q", out.String())
	}
}
