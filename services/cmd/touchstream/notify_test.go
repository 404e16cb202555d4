package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/notify"
)

// TestNotifyCommand drives `touchstream notify`: run parks what the webhook refuses,
// parked lists it, redeliver --all delivers it once the webhook accepts, discard
// refuses an unknown one.
func TestNotifyCommand(t *testing.T) {
	c := newCLIEnv(t)
	var status atomic.Int32
	status.Store(http.StatusBadRequest)
	var accepted atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		if code == http.StatusOK {
			accepted.Add(1)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	hooks := filepath.Join(t.TempDir(), "webhooks.json")
	content := fmt.Sprintf(`{"webhooks": [{"name": "desk", "url": %q, "secret_env": "DESK_SECRET", "start": "all"}]}`, srv.URL)
	if err := os.WriteFile(hooks, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	base := c.env
	env := config.Env(func(k string) string {
		switch k {
		case "DESK_SECRET":
			return "0123456789abcdef0123456789abcdef"
		case "TOUCHSTREAM_WEBHOOKS_FILE":
			return hooks
		case "TOUCHSTREAM_ADMIN_ADDR":
			return "127.0.0.1:0"
		}
		return base(k)
	})
	run := func(ctx context.Context, args ...string) (string, error) {
		var out bytes.Buffer
		err := runNotify(ctx, args, env, &out)
		return out.String(), err
	}

	for _, args := range [][]string{{}, {"bogus"}, {"discard", "desk"}, {"redeliver", "desk"}, {"run", "extra"}} {
		if _, err := run(t.Context(), args...); !errors.Is(err, errUsage) {
			t.Errorf("notify %v: %v, want a usage error", args, err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, "run", "--retry-initial", "10ms", "--retry-max-interval", "50ms")
		done <- err
	}()
	for i := range 3 {
		body := fmt.Sprintf(`{"id":"sig-%d","type":"churn.alert_raised"}`, i)
		if _, err := c.js.PublishMsg(t.Context(), &nats.Msg{Subject: "signals.churn.alert_raised", Data: []byte(body)},
			jetstream.WithMsgID(fmt.Sprintf("sig-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var parked []notify.ParkedDelivery
	for deadline := time.Now().Add(15 * time.Second); len(parked) < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s, %d parked, want 3", len(parked))
		}
		out, err := run(t.Context(), "parked", "--json", "--webhook", "desk")
		if err != nil {
			t.Fatalf("notify parked: %v", err)
		}
		if err := json.Unmarshal([]byte(out), &parked); err != nil {
			t.Fatalf("notify parked --json: %v\n%s", err, out)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("notify run: %v", err)
	}
	out, err := run(t.Context(), "parked")
	if err != nil || !strings.Contains(out, "sig-0") || !strings.Contains(out, "status 400") {
		t.Fatalf("notify parked: %v\n%s", err, out)
	}
	t.Logf("notify parked:\n%s", out)

	status.Store(http.StatusOK)
	if out, err := run(t.Context(), "redeliver", "desk", "--all"); err != nil || !strings.Contains(out, "redelivered 3 of 3") {
		t.Fatalf("notify redeliver --all: %v\n%s", err, out)
	}
	if accepted.Load() != 3 {
		t.Errorf("webhook accepted %d, want 3", accepted.Load())
	}
	if _, err := run(t.Context(), "discard", "desk", "sig-0"); !errors.Is(err, notify.ErrNotParked) {
		t.Errorf("discard of a redelivered signal: %v, want ErrNotParked", err)
	}
}
