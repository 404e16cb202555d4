package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/testkit"
)

func TestAdminEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "touchstream_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var healthy atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := admin.New(admin.Config{Registry: reg, Listener: ln, Checks: []admin.Check{
		{Name: "always", Run: func(context.Context) error { return nil }},
		{Name: "nats", Run: func(context.Context) error {
			if !healthy.Load() {
				return errors.New("not connected")
			}
			return nil
		}},
	}}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + ln.Addr().String()
	get := func(t *testing.T, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name     string
		path     string
		healthy  bool
		wantCode int
		wantBody string
	}{
		{name: "alive", path: "/healthz", healthy: false, wantCode: 200, wantBody: `"alive"`},
		{name: "ready", path: "/readyz", healthy: true, wantCode: 200, wantBody: `"ready"`},
		{name: "not ready", path: "/readyz", healthy: false, wantCode: 503, wantBody: `"nats":"not connected"`},
		{name: "metrics", path: "/metrics", healthy: true, wantCode: 200, wantBody: "touchstream_test_total 3"},
		{name: "pprof", path: "/debug/pprof/", healthy: true, wantCode: 200, wantBody: "goroutine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			healthy.Store(tt.healthy)
			code, body := get(t, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	healthy.Store(false)
	_, body := get(t, "/readyz")
	var got struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"always": "ok", "nats": "not connected"}
	if diff := cmp.Diff(want, got.Checks); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  admin.Config
		want string
	}{
		{name: "ok", cfg: admin.Config{Registry: prometheus.NewRegistry()}},
		{name: "no registry", cfg: admin.Config{}, want: "Registry"},
		{name: "bad addr", cfg: admin.Config{Registry: prometheus.NewRegistry(), Addr: "x"}, want: `Addr "x"`},
		{name: "unnamed check", cfg: admin.Config{Registry: prometheus.NewRegistry(), Checks: []admin.Check{{}}}, want: "Checks[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
