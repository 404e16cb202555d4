// Package httpserve runs touchstream's HTTP APIs (query, redemption) the same way:
// bounded reads, writes and headers, and on cancellation a graceful drain of the
// requests in progress within a deadline.
package httpserve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Settings bound one server.
type Settings struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// ShutdownTimeout bounds the drain of requests in progress on cancellation.
	ShutdownTimeout time.Duration
}

// Serve serves h on ln, or on a new listener on addr when ln is nil, until ctx is
// cancelled; then it stops accepting, lets the requests in progress finish within
// ShutdownTimeout (closing what is left) and returns nil. started, if set, is called
// with the listening address once serving. name prefixes errors ("query").
func Serve(ctx context.Context, name, addr string, ln net.Listener, h http.Handler, s Settings, log *slog.Logger, started func(net.Addr)) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("%s: listen %s: %w", name, addr, err)
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if started != nil {
		started(ln.Addr())
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("%s: serve: %w", name, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in progress at the shutdown deadline", "error", err)
		_ = srv.Close()
	}
	return nil
}

// Check validates the settings of server name against the request timeout its
// handlers use: one error per problem, each naming the field and the reason.
func (s Settings) Check(name string, requestTimeout time.Duration) []error {
	var errs []error
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"RequestTimeout", requestTimeout}, {"ShutdownTimeout", s.ShutdownTimeout}, {"ReadHeaderTimeout", s.ReadHeaderTimeout},
		{"ReadTimeout", s.ReadTimeout}, {"WriteTimeout", s.WriteTimeout}, {"IdleTimeout", s.IdleTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s %s: must be positive", name, d.field, d.v))
		}
	}
	if s.WriteTimeout <= requestTimeout {
		errs = append(errs, fmt.Errorf("%s: WriteTimeout %s: must exceed RequestTimeout (%s), or slow answers are cut off unwritten", name, s.WriteTimeout, requestTimeout))
	}
	if s.MaxHeaderBytes < 4096 {
		errs = append(errs, fmt.Errorf("%s: MaxHeaderBytes %d: must be at least 4096", name, s.MaxHeaderBytes))
	}
	return errs
}

// WriteError writes a JSON error body (already encoded, without its newline) with
// the headers every error answer carries: JSON, never cached, no sniffing. Set any
// other header (Retry-After, Allow) before calling it.
func WriteError(w http.ResponseWriter, status int, body []byte) int {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return status
}
