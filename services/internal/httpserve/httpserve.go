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
