package redeem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// Server is the redemption API.
type Server struct {
	cfg      Config
	pool     *pgxpool.Pool
	pub      *events.Publisher
	balance  BalanceFunc
	log      *slog.Logger
	m        *metrics
	listener net.Listener
	handler  http.Handler
	serving  *projections.ServingCache // nil: the configured target
}

// New returns a redemption server. The reservations table must exist (Migrate).
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Pool == nil {
		errs = append(errs, errors.New("redeem: Deps.Pool: required"))
	}
	if deps.Publisher == nil {
		errs = append(errs, errors.New("redeem: Deps.Publisher: required (the service publishes points.redeemed)"))
	}
	if deps.Balance == nil {
		errs = append(errs, errors.New("redeem: Deps.Balance: required (loyalty.Available)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, pool: deps.Pool, pub: deps.Publisher, balance: deps.Balance, log: deps.Log, m: m, listener: deps.Listener}
	if cfg.FollowServing {
		s.serving = &projections.ServingCache{DB: deps.Pool, TTL: time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Sweep republishes, once, what requests left pending for longer than PendingGrace.
// Run does it every SweepInterval; tests and tools call it directly.
func (s *Server) Sweep(ctx context.Context) error { return s.sweep(ctx) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/loyalty/members/{customer_id}/redemptions", s.endpoint("redeem", s.postRedemption))
	mux.Handle("GET /v1/loyalty/redemptions/{id}", s.endpoint("get", s.getRedemption))
	mux.Handle("POST /v1/loyalty/redemptions/{id}/reversal", s.endpoint("reverse", s.postReversal))
	mux.Handle("GET /v1/loyalty/openapi.json", s.endpoint("openapi", s.getOpenAPI))
	mux.Handle("/", s.endpoint("unmatched", unmatched(mux)))
	return mux
}

// Run serves until ctx is cancelled, republishing pending work every SweepInterval,
// then stops accepting, lets the requests in progress finish within ShutdownTimeout
// and returns nil.
func (s *Server) Run(ctx context.Context) error {
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); s.sweepLoop(sweepCtx) }()
	defer func() { stopSweep(); <-swept }()
	err := httpserve.Serve(ctx, "redeem", s.cfg.Addr, s.listener, s.handler, s.cfg.httpSettings(), s.log, func(addr net.Addr) {
		s.log.Info("redemption API serving", "addr", addr.String(), "loyalty", s.cfg.LoyaltyTarget)
	})
	if err == nil {
		s.log.Info("redemption API stopped")
	}
	return err
}

// loyaltyTarget is the version of the loyalty read model that answers now.
func (s *Server) loyaltyTarget(ctx context.Context) (string, error) {
	if s.serving == nil {
		return s.cfg.LoyaltyTarget, nil
	}
	t, err := s.serving.Target(ctx, Projection, s.cfg.LoyaltyTarget)
	if err != nil {
		return "", fmt.Errorf("serving version of %s: %w", Projection, err)
	}
	return t, nil
}

// call is one request being answered.
type call struct {
	r        *http.Request
	ctx      context.Context
	reqID    string
	customer string // the member concerned, for the log; set once validated
}

// reply is a successful answer.
type reply struct {
	status   int
	body     any
	raw      []byte // served as is
	replayed bool   // an idempotent repeat: Idempotent-Replayed: true
}

type endpointFunc func(c *call) (*reply, error)

// apiError is a deliberate error answer: its code and message reach the client.
type apiError struct {
	status     int
	code       string
	message    string
	param      string
	available  *int64 // insufficient_points only
	retryAfter int    // seconds; 0: none
	allow      string // 405 only
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func badParam(name, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeInvalidParameter, param: name, message: name + ": " + fmt.Sprintf(format, args...)}
}

// Error codes.
const (
	codeInvalidParameter     = "invalid_parameter"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeTooLarge             = "request_too_large"
	codeInsufficientPoints   = "insufficient_points"
	codeIdempotencyConflict  = "idempotency_conflict"
	codeRedemptionPending    = "redemption_pending"
	codeRedemptionFailed     = "redemption_failed"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeUnavailable          = "unavailable"
	codeInternal             = "internal"
)

// errorBody is every error's JSON body.
type errorBody struct {
	Error     errorDetail `json:"error"`
	Available *int64      `json:"available,omitempty"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter,omitempty"`
	RequestID string `json:"request_id"`
}

// endpoint wraps an endpoint with what every request gets: a request id, a time
// bound, error mapping, panic recovery, metrics and one log line (route, member,
// status; never the body).
func (s *Server) endpoint(route string, fn endpointFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{r: r, reqID: requestID(r.Header.Get("X-Request-Id"))}
		w.Header().Set("X-Request-Id", c.reqID)
		status := 0
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "request_id", c.reqID, "route", route, "panic", fmt.Sprint(p))
				status = s.writeError(w, c, internalError())
			}
			s.m.observe(route, status, time.Since(start))
			s.log.Info("http request", "request_id", c.reqID, "route", route, "method", r.Method, "status", status,
				"customer_id", c.customer, "duration_ms", float64(time.Since(start).Microseconds())/1000)
		}()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		c.ctx = ctx
		rep, err := fn(c)
		if err != nil {
			status = s.fail(w, c, route, err)
			return
		}
		status = s.writeReply(w, c, rep)
	})
}

// errPending: an event's acknowledgement did not come; the reservation stays pending
// and the sweeper (or the client's retry) completes it.
var errPending = errors.New("publication outcome unknown")

// errNoReadModel: the loyalty read model's version has no tables yet (the projector
// has not migrated it): nothing is reserved, the client retries.
var errNoReadModel = errors.New("loyalty read model not there yet")

// fail answers an error: deliberate ones as they are, lost acknowledgements and time
// running out as 503 with Retry-After, anything else as a logged 500.
func (s *Server) fail(w http.ResponseWriter, c *call, route string, err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return s.writeError(w, c, ae)
	case c.r.Context().Err() != nil:
		// The client went away: nobody reads the answer. 499, as proxies record it.
		return 499
	case errors.Is(err, errPending), errors.Is(err, events.ErrAckUnknown), errors.Is(err, events.ErrStreamRefused),
		errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("request could not be completed in time; left pending", "request_id", c.reqID, "route", route,
			"customer_id", c.customer, "error", err)
		return s.writeError(w, c, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, retryAfter: 1,
			message: "not completed in time; retry with the same idempotency key: it is never redeemed twice"})
	case errors.Is(err, errNoReadModel):
		s.log.Warn("the loyalty read model does not exist yet", "request_id", c.reqID, "route", route, "error", err)
		return s.writeError(w, c, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, retryAfter: 5,
			message: "balances are not available yet; retry shortly"})
	default:
		s.log.Error("request failed", "request_id", c.reqID, "route", route, "customer_id", c.customer, "error", err)
		return s.writeError(w, c, internalError())
	}
}

func internalError() *apiError {
	return &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error; quote the request id"}
}

func (s *Server) writeError(w http.ResponseWriter, c *call, e *apiError) int {
	body, err := json.Marshal(errorBody{
		Error:     errorDetail{Code: e.code, Message: e.message, Parameter: e.param, RequestID: c.reqID},
		Available: e.available,
	})
	if err != nil { // cannot happen: plain strings and numbers
		body = []byte(`{"error":{"code":"internal","message":"internal error","request_id":""}}`)
	}
	h := w.Header()
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	return httpserve.WriteError(w, e.status, body)
}

func (s *Server) writeReply(w http.ResponseWriter, c *call, rep *reply) int {
	body := rep.raw
	if body == nil {
		b, err := json.Marshal(rep.body)
		if err != nil {
			s.log.Error("encoding the answer failed", "request_id", c.reqID, "error", err)
			return s.writeError(w, c, internalError())
		}
		body = append(b, '\n')
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if rep.replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	status := rep.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID keeps a client's request id when it is sane, or mints one.
func requestID(given string) string {
	if saneRequestID.MatchString(given) {
		return given
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// unmatched answers requests no route takes: 405 (with Allow) for another method on
// a known path, 404 otherwise, both as JSON errors.
func unmatched(mux *http.ServeMux) endpointFunc {
	return func(c *call) (*reply, error) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if m == c.r.Method {
				continue
			}
			probe := c.r.Clone(c.ctx)
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			a := allow[0]
			if len(allow) > 1 {
				a += ", " + allow[1]
			}
			return nil, &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, allow: a,
				message: "method not allowed here; allowed: " + a}
		}
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such resource; see /v1/loyalty/openapi.json"}
	}
}
