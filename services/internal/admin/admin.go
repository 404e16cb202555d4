// Package admin is the admin listener every touchstream service shares: /metrics (the
// service's Prometheus registry), /healthz (the process is alive), /readyz (the
// service's readiness checks all pass) and /debug/pprof. It is meant for operators and
// scrapers on an internal address, never for channel systems.
//
// /readyz runs every check concurrently, each bounded by CheckTimeout, and answers 200
// when all pass or 503 naming those that failed, as JSON.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition, such as "NATS connected" or "stream reachable".
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Config configures the admin server. Zero fields take defaults.
type Config struct {
	Addr            string // default 127.0.0.1:9090
	Registry        *prometheus.Registry
	Checks          []Check
	CheckTimeout    time.Duration // default 2s
	ShutdownTimeout time.Duration // default 5s
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Routes are more handlers served on the admin listener, by mux pattern (the
	// operations API "/v1/ops/"): what operators, not customers' channels, may reach.
	Routes map[string]http.Handler
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("admin: Addr %q: %w", c.Addr, err))
		}
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("admin: Registry: required"))
	}
	seen := map[string]bool{}
	for i, ch := range c.Checks {
		if ch.Name == "" || ch.Run == nil {
			errs = append(errs, fmt.Errorf("admin: Checks[%d]: name and func required", i))
		}
		if seen[ch.Name] {
			errs = append(errs, fmt.Errorf("admin: Checks[%d] %q: duplicate name", i, ch.Name))
		}
		seen[ch.Name] = true
	}
	if c.CheckTimeout < 0 || c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("admin: CheckTimeout, ShutdownTimeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:9090"
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 2 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
}

// Server is the admin HTTP server.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns an admin server; nil log discards.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, log: log}, nil
}

// Handler returns the admin routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
		Registry: s.cfg.Registry, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for pattern, h := range s.cfg.Routes {
		mux.Handle(pattern, h)
	}
	return mux
}

type readiness struct {
	Status string            `json:"status"` // ready or not_ready
	Checks map[string]string `json:"checks"` // name -> "ok" or the error
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	out := readiness{Status: "ready", Checks: make(map[string]string, len(s.cfg.Checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.cfg.Checks {
		wg.Go(func() {
			err := c.Run(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Status = "not_ready"
				out.Checks[c.Name] = err.Error()
				return
			}
			out.Checks[c.Name] = "ok"
		})
	}
	wg.Wait()
	code := http.StatusOK
	if out.Status != "ready" {
		code = http.StatusServiceUnavailable
		s.log.Warn("not ready", "checks", out.Checks)
	}
	writeJSON(w, code, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Run serves until ctx is cancelled, then shuts down within ShutdownTimeout and
// returns nil.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("admin: listen %s: %w", s.cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.log.Info("admin listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("admin: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return nil
}
