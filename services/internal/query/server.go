package query

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// Server is the query API.
type Server struct {
	cfg      Config
	db       projections.Querier
	keys     events.KeySource
	viewer   ViewerFunc
	audit    AuditLog
	tickets  *access.Tickets // nil: no stream tickets
	types    map[string]bool // event types a timeline may filter on
	tiers    map[string]bool // nil: any tier token
	log      *slog.Logger
	m        *metrics
	listener net.Listener
	handler  http.Handler
	serving  *projections.ServingCache // nil: the configured targets
	commands *events.Publisher         // nil: the command routes answer 503
}

// New returns a query server.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.DB == nil {
		errs = append(errs, errors.New("query: Deps.DB: required"))
	}
	if deps.Keys == nil {
		errs = append(errs, errors.New("query: Deps.Keys: required (personal fields cannot be opened without a key source)"))
	}
	if deps.Viewer == nil {
		errs = append(errs, errors.New("query: Deps.Viewer: required (every route but the OpenAPI document asks who the caller is)"))
	}
	if deps.Audit == nil {
		errs = append(errs, errors.New("query: Deps.Audit: required (reads of personal data are recorded before they are answered)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cat := deps.Catalog
	if cat == nil {
		var err error
		if cat, err = events.DefaultCatalog(); err != nil {
			return nil, fmt.Errorf("query: event catalog: %w", err)
		}
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, db: deps.DB, keys: deps.Keys, viewer: deps.Viewer, audit: deps.Audit, tickets: deps.Tickets, log: deps.Log, m: m,
		listener: deps.Listener, types: map[string]bool{}, commands: deps.Commands}
	if cfg.FollowServing {
		s.serving = &projections.ServingCache{DB: deps.DB, TTL: time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range cat.Types() {
		s.types[t] = true
	}
	if len(cfg.Tiers) > 0 {
		s.tiers = map[string]bool{}
		for _, t := range cfg.Tiers {
			s.tiers[t] = true
		}
	}
	if s.handler, err = s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the API's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// routes are the API's routes. Every route but the OpenAPI document (and the answers
// to unknown paths) asks who the caller is and consults the role matrix under its
// name (access.Needs): a route the matrix does not list is a construction error.
func (s *Server) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	var missing []string
	guarded := func(route string, fn endpointFunc) http.Handler {
		if _, ok := access.Needs(route); !ok {
			missing = append(missing, route)
		}
		return s.endpoint(route, true, fn)
	}
	mux.Handle("GET /v1/customers/{id}", guarded("customer", s.getCustomer))
	mux.Handle("GET /v1/customers/{id}/timeline", guarded("timeline", s.getTimeline))
	mux.Handle("GET /v1/customers", guarded("search", s.searchCustomers))
	mux.Handle("GET /v1/loyalty/members/{id}", guarded("loyalty_member", s.getLoyaltyMember))
	mux.Handle("GET /v1/loyalty/members/{id}/ledger", guarded("loyalty_ledger", s.getLoyaltyLedger))
	mux.Handle("GET /v1/loyalty/totals", guarded("loyalty_totals", s.getLoyaltyTotals))
	mux.Handle("GET /v1/churn/scores", guarded("churn_scores", s.getChurnScores))
	mux.Handle("GET /v1/churn/distribution", guarded("churn_distribution", s.getChurnDistribution))
	mux.Handle("GET /v1/churn/customers/{id}", guarded("churn_customer", s.getChurnCustomer))
	mux.Handle("GET /v1/churn/alerts", guarded("churn_alerts", s.getChurnAlerts))
	mux.Handle("GET /v1/churn/alerts/{id}", guarded("churn_alert", s.getChurnAlert))
	mux.Handle("POST /v1/churn/alerts/{id}/acknowledge", guarded("churn_acknowledge", s.acknowledgeAlert))
	mux.Handle("POST /v1/churn/alerts/{id}/actions", guarded("churn_action", s.actOnAlert))
	mux.Handle("POST /v1/churn/alerts/{id}/close", guarded("churn_close", s.closeAlert))
	mux.Handle("GET /v1/service-level/answer-rate", guarded("servicelevel_answer_rate", s.getAnswerRate))
	mux.Handle("GET /v1/service-level/breaches", guarded("servicelevel_breaches", s.getBreaches))
	mux.Handle("GET /v1/service-level/summary", guarded("servicelevel_summary", s.getServiceLevelSummary))
	mux.Handle("GET /v1/customers/{id}/complaints", guarded("complaints", s.getComplaints))
	mux.Handle("GET /v1/audit/access", guarded("audit_access", s.getAuditAccess))
	mux.Handle("GET /v1/session", guarded("session", s.getSession))
	mux.Handle("POST /v1/stream/tickets", guarded("stream_ticket", s.issueStreamTicket))
	mux.Handle("GET /v1/openapi.json", s.endpoint("openapi", false, s.getOpenAPI))
	if len(missing) > 0 {
		return nil, fmt.Errorf("query: routes %s are not in the role matrix (access)", strings.Join(missing, ", "))
	}
	for pattern, h := range s.cfg.Routes {
		mux.Handle(pattern, h)
	}
	mux.Handle("/", s.endpoint("unmatched", false, unmatched(mux)))
	return mux, nil
}

// Run serves until ctx is cancelled, then stops accepting, lets the requests in
// progress finish within ShutdownTimeout and returns nil.
func (s *Server) Run(ctx context.Context) error {
	err := httpserve.Serve(ctx, "query", s.cfg.Addr, s.listener, s.handler, s.cfg.httpSettings(), s.log, func(addr net.Addr) {
		s.log.Info("query API serving", "addr", addr.String(), "customer360", s.cfg.Customer360Target, "timeline", s.cfg.TimelineTarget)
	})
	if err == nil {
		s.log.Info("query API stopped")
	}
	return err
}

// call is one request being answered.
type call struct {
	r        *http.Request
	ctx      context.Context
	reqID    string
	viewer   access.Principal
	customer string // the customer concerned, for the log; set once validated
}

// reply is a successful answer: a JSON body (or raw bytes) and its freshness.
type reply struct {
	status      int // 0: 200 with an ETag; otherwise this status, uncacheable (commands)
	body        any
	raw         []byte // served as is, with contentType
	contentType string
	fresh       *Freshness
}

type endpointFunc func(c *call) (*reply, error)

// apiError is a deliberate error answer: its code and message reach the client.
type apiError struct {
	status  int
	code    string
	message string
	param   string
	fresh   *Freshness
	allow   string // the Allow header of a 405
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func badParam(name, message string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeInvalidParameter, param: name, message: message}
}

// Error codes.
const (
	codeInvalidParameter = "invalid_parameter"
	codeMissingFilter    = "missing_filter"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeConflict         = "conflict"
	codeTooLarge         = "too_large"
	codeUnauthenticated  = "unauthenticated"
	codeForbidden        = "forbidden"
	codeUnavailable      = "unavailable"
	codeInternal         = "internal"
)

// errorBody is every error's JSON body.
type errorBody struct {
	Error     errorDetail `json:"error"`
	Freshness *Freshness  `json:"freshness,omitempty"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter,omitempty"`
	RequestID string `json:"request_id"`
}

// endpoint wraps an endpoint with what every request gets: a request id, the viewer
// and the role matrix's verdict (when guarded), a time bound, error mapping, panic
// recovery, metrics and one log line.
func (s *Server) endpoint(route string, guarded bool, fn endpointFunc) http.Handler {
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
				"customer_id", c.customer, "viewer", c.viewer.StaffID, "access", string(accessOf(c.viewer)),
				"duration_ms", float64(time.Since(start).Microseconds())/1000)
		}()
		status = s.serve(w, c, route, guarded, fn)
	})
}

func (s *Server) serve(w http.ResponseWriter, c *call, route string, guarded bool, fn endpointFunc) int {
	ctx, cancel := context.WithTimeout(c.r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	c.ctx = ctx
	if guarded {
		v, err := s.viewer(c.r)
		if err == nil {
			c.viewer = v
			err = v.Authorize(route)
		}
		switch {
		case errors.Is(err, ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", access.Challenge(err))
			return s.writeError(w, c, &apiError{status: http.StatusUnauthorized, code: codeUnauthenticated, message: access.Reason(err)})
		case errors.Is(err, access.ErrForbidden):
			w.Header().Set("WWW-Authenticate", access.Challenge(err))
			return s.writeError(w, c, &apiError{status: http.StatusForbidden, code: codeForbidden, message: access.Reason(err)})
		case err != nil:
			s.log.Error("deciding the viewer failed", "request_id", c.reqID, "route", route, "error", err)
			return s.writeError(w, c, internalError())
		}
	}
	rep, err := fn(c)
	if err != nil {
		return s.fail(w, c, route, err)
	}
	return s.writeReply(w, c, rep)
}

// fail answers an error: deliberate ones as they are, the key service or the
// database out of time as 503, anything else as a logged 500 with a generic message.
func (s *Server) fail(w http.ResponseWriter, c *call, route string, err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		if ae.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", cmp.Or(ae.allow, "GET, HEAD"))
		}
		return s.writeError(w, c, ae)
	case c.r.Context().Err() != nil:
		// The client went away: nobody reads the answer. 499, as proxies record it.
		return 499
	case errors.Is(err, errKeysUnavailable), errors.Is(err, errLogUnavailable), errors.Is(err, errAuditUnavailable),
		errors.Is(err, audit.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("request could not be answered in time", "request_id", c.reqID, "route", route,
			"customer_id", c.customer, "error", err)
		w.Header().Set("Retry-After", "1")
		return s.writeError(w, c, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "temporarily unavailable; retry shortly and quote the request id if it persists"})
	case notMigrated(err):
		// The projector has not created the read models (or the runtime's tables) on
		// this database yet: a fresh installation starting up, not a fault.
		s.log.Warn("read models not created yet", "request_id", c.reqID, "route", route, "error", err)
		w.Header().Set("Retry-After", "5")
		return s.writeError(w, c, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "the read models are not created yet: the projector creates them when it starts; retry shortly"})
	default:
		s.log.Error("request failed", "request_id", c.reqID, "route", route, "customer_id", c.customer, "error", err)
		return s.writeError(w, c, internalError())
	}
}

// notMigrated reports a missing table or schema (undefined_table, invalid_schema_name).
func notMigrated(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

func internalError() *apiError {
	return &apiError{status: http.StatusInternalServerError, code: codeInternal, message: "internal error; quote the request id"}
}

func (s *Server) writeError(w http.ResponseWriter, c *call, e *apiError) int {
	body, err := json.Marshal(errorBody{
		Error:     errorDetail{Code: e.code, Message: e.message, Parameter: e.param, RequestID: c.reqID},
		Freshness: e.fresh,
	})
	if err != nil { // cannot happen: plain strings and numbers
		body = []byte(`{"error":{"code":"internal","message":"internal error","request_id":""}}`)
	}
	if e.fresh != nil {
		e.fresh.setHeaders(w.Header())
	}
	return httpserve.WriteError(w, e.status, body)
}

// writeReply answers 200 with the body and its strong ETag, or 304 when the client
// already holds that exact body.
func (s *Server) writeReply(w http.ResponseWriter, c *call, rep *reply) int {
	body, ct := rep.raw, rep.contentType
	if body == nil {
		b, err := json.Marshal(rep.body)
		if err != nil {
			s.log.Error("encoding the answer failed", "request_id", c.reqID, "error", err)
			return s.writeError(w, c, internalError())
		}
		body, ct = append(b, '\n'), "application/json; charset=utf-8"
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	h := w.Header()
	if rep.status != 0 {
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", ct)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(rep.status)
		_, _ = w.Write(body)
		return rep.status
	}
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache, private")
	h.Set("Vary", "Authorization")
	if rep.fresh != nil {
		rep.fresh.setHeaders(h)
	}
	if noneMatch(c.r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}

// noneMatch reports whether an If-None-Match header lists etag (weak comparison, as
// RFC 9110 prescribes for If-None-Match) or is "*".
func noneMatch(headers []string, etag string) bool {
	for _, h := range headers {
		for _, t := range strings.Split(h, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
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

// unmatched answers requests no route takes: 405 for another method on a known path
// (reads take GET and HEAD, commands POST), 404 otherwise, both as JSON errors.
func unmatched(mux *http.ServeMux) endpointFunc {
	return func(c *call) (*reply, error) {
		probe := c.r.Clone(c.ctx)
		for _, m := range []struct{ method, allow, message string }{
			{http.MethodGet, "GET, HEAD", "only GET and HEAD are served"},
			{http.MethodPost, "POST", "commands take POST only"},
		} {
			if m.method == c.r.Method || (m.method == http.MethodGet && c.r.Method == http.MethodHead) {
				continue
			}
			probe.Method = m.method
			if _, pattern := mux.Handler(probe); pattern != "/" {
				return nil, &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, allow: m.allow, message: m.message}
			}
		}
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such resource; see /v1/openapi.json"}
	}
}
