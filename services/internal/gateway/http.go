package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Media types of the CloudEvents HTTP binding.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
	mediaBinary     = "application/json"
)

// tooLarge is a request over a size or count limit: 413.
type tooLarge struct{ reason string }

func (e *tooLarge) Error() string { return e.reason }

// Handler returns the HTTP handler of the gateway: POST /v1/events.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", g.serveEvents)
	return mux
}

func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := requestID(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", reqID)
	var (
		resp *Response
		code int
		ch   *channel
	)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.Error("panic serving request", "request_id", reqID, "panic", fmt.Sprint(p))
			resp, code = errorResponse(reqID, http.StatusInternalServerError, "internal error; quote the request id")
		}
		g.writeHTTP(w, resp, code)
		g.observe("http", code, start)
		name := ""
		if ch != nil {
			name = ch.Name
		}
		g.log.Log(context.Background(), logLevel(code), "http request", "request_id", reqID, "channel", name, "status", code,
			"events", len(resp.Results), "stored", resp.Stored, "duplicates", resp.Duplicates,
			"refused", resp.Refused, "unknown", resp.Unknown, "failed", resp.Failed,
			"duration_ms", time.Since(start).Milliseconds())
	}()
	// A slow body holds a connection and a goroutine: it must be in by the deadline.
	// (Without a connection, as under httptest's recorder, there is nothing to bound.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout))
	ch, resp, code = g.handleHTTP(r, reqID)
}

// handleHTTP authenticates, reads and decodes a request, then ingests its events.
func (g *Gateway) handleHTTP(r *http.Request, reqID string) (*channel, *Response, int) {
	key := r.Header.Get("X-API-Key")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			resp, code := errorResponse(reqID, http.StatusUnauthorized, "Authorization must be \"Bearer <key>\"")
			return nil, resp, code
		}
		key = strings.TrimSpace(token)
	}
	if key == "" {
		resp, code := errorResponse(reqID, http.StatusUnauthorized, "missing API key: send Authorization: Bearer <key> or X-API-Key")
		return nil, resp, code
	}
	ch := g.byKey[HashKey(key)]
	if ch == nil {
		resp, code := errorResponse(reqID, http.StatusUnauthorized, "unknown API key")
		return nil, resp, code
	}

	mode, err := mediaMode(r.Header.Get("Content-Type"))
	if err != nil {
		resp, code := errorResponse(reqID, http.StatusUnsupportedMediaType, err.Error())
		return ch, resp, code
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		resp, code := errorResponse(reqID, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes: the limit is %d", r.ContentLength, g.cfg.MaxBodyBytes))
		return ch, resp, code
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxBodyBytes+1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		resp, code := errorResponse(reqID, http.StatusRequestTimeout, fmt.Sprintf("the body did not arrive within %s of the headers", g.cfg.BodyTimeout))
		return ch, resp, code
	case err != nil:
		resp, code := errorResponse(reqID, http.StatusBadRequest, "could not read the body")
		return ch, resp, code
	}
	if int64(len(body)) > g.cfg.MaxBodyBytes {
		resp, code := errorResponse(reqID, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the limit of %d bytes", g.cfg.MaxBodyBytes))
		return ch, resp, code
	}
	var in []input
	switch mode {
	case mediaStructured:
		in, err = decodeSingle(body)
	case mediaBatch:
		in, err = decodeBatch(body, g.cfg.MaxBatch)
	default:
		in, err = decodeBinary(r.Header, body)
	}
	if err != nil {
		resp, code := decodeError(reqID, err)
		return ch, resp, code
	}
	resp, code := g.process(r.Context(), ch, in, reqID)
	return ch, resp, code
}

// mediaMode maps a Content-Type to a mode of the HTTP binding.
func mediaMode(ct string) (string, error) {
	const supported = "send application/cloudevents+json (one event), application/cloudevents-batch+json (a JSON array) or application/json (binary mode: ce-* headers, data as the body)"
	if ct == "" {
		return "", errors.New("missing Content-Type: " + supported)
	}
	mt, params, err := parseMediaType(ct)
	if err != nil {
		return "", errors.New("unreadable Content-Type: " + supported)
	}
	if cs := params["charset"]; cs != "" && !strings.EqualFold(cs, "utf-8") {
		return "", errors.New("charset must be utf-8")
	}
	switch mt {
	case mediaStructured, mediaBatch, mediaBinary:
		return mt, nil
	}
	return "", errors.New("unsupported Content-Type: " + supported)
}

func parseMediaType(s string) (string, map[string]string, error) {
	mt, params, err := mime.ParseMediaType(s)
	return strings.ToLower(mt), params, err
}

func decodeError(reqID string, err error) (*Response, int) {
	var tl *tooLarge
	if errors.As(err, &tl) {
		return errorResponse(reqID, http.StatusRequestEntityTooLarge, tl.reason)
	}
	return errorResponse(reqID, http.StatusBadRequest, err.Error())
}

// process admits a request (NATS up, in-flight budget, the channel's rate limit) and
// ingests its events. Once admitted, a request is carried through even if the client
// goes away, so that what is stored does not depend on a hang-up.
func (g *Gateway) process(ctx context.Context, ch *channel, in []input, reqID string) (*Response, int) {
	if g.nc.Status() != nats.CONNECTED {
		g.metrics.natsUnavailable.Inc()
		resp, code := errorResponse(reqID, http.StatusServiceUnavailable, "the log is unreachable; retry later")
		resp.RetryAfter = retrySeconds(g.cfg.RetryAfter)
		return resp, code
	}
	n := len(in)
	if ch.limiter != nil && n > ch.limiter.Burst() {
		return errorResponse(reqID, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("batch of %d events exceeds channel %s's burst of %d: split it", n, ch.Name, ch.limiter.Burst()))
	}
	if !g.inflight.TryAcquire(int64(n)) {
		resp, code := errorResponse(reqID, http.StatusServiceUnavailable, "the gateway is at capacity; retry later")
		resp.RetryAfter = retrySeconds(g.cfg.RetryAfter)
		return resp, code
	}
	defer g.inflight.Release(int64(n))
	if ch.limiter != nil {
		res := ch.limiter.ReserveN(time.Now(), n)
		if d := res.Delay(); d > 0 {
			res.Cancel()
			resp, code := errorResponse(reqID, http.StatusTooManyRequests, fmt.Sprintf("channel %s is over its rate limit of %g events/s", ch.Name, ch.RateLimit.EventsPerSecond))
			resp.RetryAfter = retrySeconds(d)
			return resp, code
		}
	}
	g.metrics.inFlight.Add(float64(n))
	defer g.metrics.inFlight.Sub(float64(n))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RequestTimeout)
	defer cancel()
	return g.ingest(ctx, ch, in, reqID)
}

func errorResponse(reqID string, code int, msg string) (*Response, int) {
	return &Response{RequestID: reqID, Error: msg}, code
}

func (g *Gateway) writeHTTP(w http.ResponseWriter, resp *Response, code int) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if resp.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(resp.RetryAfter))
	}
	if code == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="touchstream"`)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		g.log.Error("encode response", "request_id", resp.RequestID, "error", err)
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (g *Gateway) observe(door string, code int, start time.Time) {
	g.metrics.requests.WithLabelValues(door, strconv.Itoa(code)).Inc()
	g.metrics.duration.WithLabelValues(door).Observe(time.Since(start).Seconds())
}
