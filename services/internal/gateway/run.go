package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
)

// Run serves the HTTP door and the NATS request-reply door until ctx is cancelled,
// then drains: it stops accepting, finishes the requests in progress (within
// ShutdownTimeout) and returns nil.
func (g *Gateway) Run(ctx context.Context) error {
	ln := g.listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", g.cfg.Addr); err != nil {
			return fmt.Errorf("gateway: listen %s: %w", g.cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: g.cfg.HeaderTimeout,
		// The body's deadline is set per request once its headers are in (serveEvents).
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: g.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	sub, err := g.nc.QueueSubscribe(g.cfg.Subject, g.cfg.QueueGroup, g.onNATS)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("gateway: subscribe %s: %w", g.cfg.Subject, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	g.log.Info("gateway serving", "addr", ln.Addr().String(), "nats_subject", g.cfg.Subject,
		"queue_group", g.cfg.QueueGroup, "channels", len(g.byName))

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-served:
		serveErr = fmt.Errorf("gateway: serve http: %w", err)
	}

	// Drain: stop taking requests on both doors, finish those in progress.
	deadline, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(deadline) }()
	if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		g.log.Warn("drain nats subscription", "error", err)
	}
	for sub.IsValid() && deadline.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	natsDone := make(chan struct{})
	go func() { g.handlers.Wait(); close(natsDone) }()
	select {
	case <-natsDone:
	case <-deadline.Done():
		g.log.Warn("nats requests still in progress at the shutdown deadline")
	}
	if err := <-httpDone; err != nil {
		g.log.Warn("http requests still in progress at the shutdown deadline", "error", err)
		_ = srv.Close()
	}
	_ = g.pub.Close()
	g.log.Info("gateway stopped")
	return serveErr
}

// onNATS answers a request on ingest.<channel>.<type>: the body is one
// structured-mode event or a batch array of events of that type; the reply is the
// Response, with Status set, sent after the events are stored.
func (g *Gateway) onNATS(msg *nats.Msg) {
	g.handlers.Add(1)
	go func() {
		defer g.handlers.Done()
		g.serveNATS(msg)
	}()
}

func (g *Gateway) serveNATS(msg *nats.Msg) {
	start := time.Now()
	reqID := requestID(msg.Header.Get("X-Request-Id"))
	var (
		resp *Response
		code int
		name string
	)
	defer func() {
		if p := recover(); p != nil {
			g.log.Error("panic serving nats request", "request_id", reqID, "panic", fmt.Sprint(p))
			resp, code = errorResponse(reqID, 500, "internal error; quote the request id")
		}
		resp.Status = code
		if msg.Reply != "" {
			b, err := json.Marshal(resp)
			if err != nil {
				b = []byte(`{"status":500,"error":"internal error"}`)
			}
			if err := msg.Respond(b); err != nil {
				g.log.Warn("nats reply failed", "request_id", reqID, "channel", name, "error", err)
			}
		}
		g.observe("nats", code, start)
		g.log.Log(context.Background(), logLevel(code), "nats request", "request_id", reqID, "channel", name, "status", code,
			"events", len(resp.Results), "stored", resp.Stored, "duplicates", resp.Duplicates,
			"refused", resp.Refused, "unknown", resp.Unknown, "failed", resp.Failed,
			"duration_ms", time.Since(start).Milliseconds())
	}()
	chName, typ, err := events.ParseChannelSubject(msg.Subject)
	if err != nil {
		resp, code = errorResponse(reqID, 400, err.Error())
		return
	}
	ch := g.byName[chName]
	if ch == nil {
		resp, code = errorResponse(reqID, 404, "no such channel")
		return
	}
	name = ch.Name
	if int64(len(msg.Data)) > g.cfg.MaxBodyBytes {
		resp, code = errorResponse(reqID, 413, fmt.Sprintf("body over the limit of %d bytes", g.cfg.MaxBodyBytes))
		return
	}
	in, err := decodeAny(msg.Data, g.cfg.MaxBatch)
	if err != nil {
		resp, code = decodeError(reqID, err)
		return
	}
	// The subject names the type its permission was granted for: an event of another
	// type is refused, so a channel's NATS permissions bound what it can write.
	for i := range in {
		if e := in[i].ev; e != nil && e.Type != typ {
			in[i] = refusedInput("/type", fmt.Sprintf("the subject %s carries %s events only", msg.Subject, typ))
		}
	}
	resp, code = g.process(context.Background(), ch, in, reqID)
}
