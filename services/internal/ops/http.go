package ops

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/erase"
	"github.com/touchstream/touchstream/services/internal/keystore"
)

// openAPI is the ops API's contract, written by hand and served as is.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.0 document of the ops API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// OperatorFunc decides who a request comes from, typically from its bearer token. An
// error matching ErrUnauthenticated answers 401; any other error is a logged 500.
type OperatorFunc func(r *http.Request) (Operator, error)

// ErrUnauthenticated: the request does not say who it comes from, or says it wrongly.
var ErrUnauthenticated = access.ErrUnauthenticated

// Authorizer decides who a request comes from and whether the role matrix lets them
// use a route (access.Gate.Authorize): an error matching ErrUnauthenticated answers
// 401, one matching access.ErrForbidden 403. The routes' names in the matrix are
// "ops_" and the route: ops_status, ops_dead_letters, ops_dead_letter, ops_redrive,
// ops_discard, ops_history.
type Authorizer func(r *http.Request, route string) (access.Principal, error)

// ConsoleOperator is the default OperatorFunc until console accounts arrive: every
// request is the operator "console", without access to personal fields in clear.
func ConsoleOperator(*http.Request) (Operator, error) { return Operator{ID: "console"}, nil }

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// Authorize decides each request's operator by its bearer token and the role
	// matrix; the operator's Reveal is the matrix's personal_clear. When set, Operator
	// is not used. The OpenAPI document and the answers to unknown routes ask nobody.
	Authorize Authorizer
	// Operator decides each request's operator when Authorize is nil. Default:
	// ConsoleOperator.
	Operator OperatorFunc
	// RequestTimeout bounds each request (default 30s: a redrive recomputes a customer).
	RequestTimeout time.Duration
}

// handler serves the ops API.
type handler struct {
	svc *Service
	cfg HandlerConfig
	log *slog.Logger
	mux *http.ServeMux
}

// NewHandler returns the ops API: the routes listed in the package documentation, all
// under /v1/ops/. Mount it as it is on a server's mux:
//
//	mux.Handle("/v1/ops/", ops.NewHandler(svc, ops.HandlerConfig{Operator: ...}))
func NewHandler(svc *Service, cfg HandlerConfig) http.Handler {
	if cfg.Operator == nil {
		cfg.Operator = ConsoleOperator
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	h := &handler{svc: svc, cfg: cfg, log: svc.log, mux: http.NewServeMux()}
	h.mux.Handle("GET /v1/ops/status", h.endpoint("status", h.status))
	h.mux.Handle("GET /v1/ops/dead-letters", h.endpoint("dead_letters", h.deadLetters))
	h.mux.Handle("GET /v1/ops/dead-letters/{id}", h.endpoint("dead_letter", h.deadLetter))
	h.mux.Handle("POST /v1/ops/dead-letters/{id}/redrive", h.endpoint("redrive", h.redrive))
	h.mux.Handle("POST /v1/ops/dead-letters/{id}/discard", h.endpoint("discard", h.discard))
	h.mux.Handle("GET /v1/ops/customers/{id}/history", h.endpoint("history", h.history))
	h.mux.Handle("POST /v1/ops/customers/{id}/erase", h.endpoint("erase", h.erase))
	h.mux.Handle("GET /v1/ops/openapi.json", h.endpoint("openapi", func(*call) (any, error) { return json.RawMessage(openAPI), nil }))
	h.mux.Handle("/", h.endpoint("unmatched", h.unmatched))
	return h.mux
}

// call is one request in progress.
type call struct {
	r     *http.Request
	ctx   context.Context
	reqID string
	op    Operator
}

// apiError is a deliberate error answer.
type apiError struct {
	status  int
	code    string
	message string
	param   string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func badParam(name, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_parameter", param: name, message: name + ": " + fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter,omitempty"`
	RequestID string `json:"request_id"`
}

var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func (h *handler) endpoint(route string, fn func(*call) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{r: r, reqID: r.Header.Get("X-Request-Id")}
		if !saneRequestID.MatchString(c.reqID) {
			var b [16]byte
			_, _ = rand.Read(b[:])
			c.reqID = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", c.reqID)
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		defer cancel()
		c.ctx = ctx
		status := h.serve(w, c, route, fn)
		h.log.Info("ops request", "request_id", c.reqID, "route", route, "method", r.Method, "status", status,
			"operator", c.op.ID, "duration_ms", float64(time.Since(start).Microseconds())/1000)
	})
}

// operator decides who a request comes from: by the role matrix when an Authorizer
// is configured (the OpenAPI document and unknown routes ask nobody), otherwise by the
// OperatorFunc.
func (h *handler) operator(r *http.Request, route string) (Operator, error) {
	if h.cfg.Authorize == nil {
		return h.cfg.Operator(r)
	}
	if route == "openapi" || route == "unmatched" {
		return Operator{}, nil
	}
	p, err := h.cfg.Authorize(r, "ops_"+route)
	if err != nil {
		return Operator{}, err
	}
	return Operator{ID: p.StaffID, Reveal: p.May(access.PersonalClear)}, nil
}

func (h *handler) serve(w http.ResponseWriter, c *call, route string, fn func(*call) (any, error)) int {
	op, err := h.operator(c.r, route)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", access.Challenge(err))
		return h.writeError(w, c, &apiError{status: http.StatusUnauthorized, code: "unauthenticated", message: access.Reason(err)})
	case errors.Is(err, access.ErrForbidden):
		w.Header().Set("WWW-Authenticate", access.Challenge(err))
		return h.writeError(w, c, &apiError{status: http.StatusForbidden, code: "forbidden", message: access.Reason(err)})
	case err != nil:
		h.log.Error("deciding the operator failed", "request_id", c.reqID, "route", route, "error", err)
		return h.writeError(w, c, &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error; quote the request id"})
	}
	c.op = op
	body, err := fn(c)
	if err != nil {
		return h.fail(w, c, route, err)
	}
	var b []byte
	if raw, ok := body.(json.RawMessage); ok {
		b = raw
	} else if b, err = json.Marshal(body); err != nil {
		return h.fail(w, c, route, err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
	return http.StatusOK
}

// fail maps errors to answers: deliberate ones with their message, the rest as a
// logged 500.
func (h *handler) fail(w http.ResponseWriter, c *call, route string, err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, ErrInvalid), errors.Is(err, erase.ErrInvalid):
		ae = &apiError{status: http.StatusBadRequest, code: "invalid_parameter", message: err.Error()}
	case errors.Is(err, projections.ErrDeadLetterNotFound):
		ae = &apiError{status: http.StatusNotFound, code: "not_found", message: err.Error()}
	case errors.Is(err, projections.ErrNotParked), errors.Is(err, projections.ErrNoCustomer), errors.Is(err, erase.ErrBusy):
		ae = &apiError{status: http.StatusConflict, code: "conflict", message: err.Error()}
	case errors.Is(err, projections.ErrStillFailing), errors.Is(err, projections.ErrNotRecomputable):
		ae = &apiError{status: http.StatusUnprocessableEntity, code: "still_failing", message: err.Error()}
	case errors.Is(err, ErrForbidden):
		ae = &apiError{status: http.StatusForbidden, code: "forbidden", message: err.Error()}
	case errors.Is(err, ErrUnavailable), errors.Is(err, projections.ErrIndexBehind), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, keystore.ErrNoKeyService):
		w.Header().Set("Retry-After", "1")
		ae = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", message: err.Error()}
	case c.r.Context().Err() != nil:
		return 499 // the client went away
	default:
		h.log.Error("ops request failed", "request_id", c.reqID, "route", route, "error", err)
		ae = &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error; quote the request id"}
	}
	return h.writeError(w, c, ae)
}

func (h *handler) writeError(w http.ResponseWriter, c *call, e *apiError) int {
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: e.code, Message: e.message, Parameter: e.param, RequestID: c.reqID}})
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	_, _ = w.Write(append(body, '\n'))
	return e.status
}

func (h *handler) unmatched(c *call) (any, error) {
	probe := c.r.Clone(c.ctx)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == c.r.Method {
			continue
		}
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "/" {
			return nil, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				message: fmt.Sprintf("%s is not allowed on %s", c.r.Method, c.r.URL.Path)}
		}
	}
	return nil, &apiError{status: http.StatusNotFound, code: "not_found", message: "no such route: " + c.r.URL.Path}
}

// params checks the query string: only known parameters, each at most once.
func params(c *call, known ...string) (map[string]string, error) {
	q := c.r.URL.Query()
	out := map[string]string{}
	for k, vs := range q {
		if !contains(known, k) {
			return nil, badParam(k, "unknown parameter (known: %s)", strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, badParam(k, "given %d times, at most once", len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func pathID(c *call) (int64, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, badParam("id", "a dead-letter id is a positive integer, got %q", c.r.PathValue("id"))
	}
	return id, nil
}

func (h *handler) status(c *call) (any, error) {
	if _, err := params(c); err != nil {
		return nil, err
	}
	return h.svc.Status(c.ctx)
}

// deadLetterView is a dead letter as the API shows it.
type deadLetterView struct {
	ID          int64      `json:"id"`
	Target      string     `json:"target"`
	Partition   int        `json:"partition"`
	Stream      string     `json:"stream"`
	Seq         uint64     `json:"seq"`
	EventSource string     `json:"event_source,omitempty"`
	EventID     string     `json:"event_id,omitempty"`
	EventType   string     `json:"event_type,omitempty"`
	Customer    string     `json:"customer_id,omitempty"`
	Error       string     `json:"error"`
	Attempts    int        `json:"attempts"`
	Status      string     `json:"status"`
	ParkedAt    time.Time  `json:"parked_at"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
	Event       *Entry     `json:"event,omitempty"`
}

// View is the JSON form of a dead letter.
func View(p projections.Parked, ev *Entry) any {
	return deadLetterView{ID: p.ID, Target: p.Target, Partition: p.Partition, Stream: p.Stream, Seq: p.Seq, EventSource: p.EventSource,
		EventID: p.EventID, EventType: p.EventType, Customer: p.Customer, Error: p.Error, Attempts: p.Attempts, Status: p.Status,
		ParkedAt: p.ParkedAt, ResolvedAt: p.ResolvedAt, Event: ev}
}

func (h *handler) deadLetters(c *call) (any, error) {
	q, err := params(c, "target", "status", "customer", "limit", "before")
	if err != nil {
		return nil, err
	}
	f := DeadLetterFilter{Target: q["target"], Status: q["status"], Customer: q["customer"], Limit: 100}
	if v, ok := q["limit"]; ok {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			return nil, badParam("limit", "an integer 1-1000, got %q", v)
		}
	}
	if v, ok := q["before"]; ok {
		if f.BeforeID, err = strconv.ParseInt(v, 10, 64); err != nil || f.BeforeID < 1 {
			return nil, badParam("before", "a dead-letter id, got %q", v)
		}
	}
	if f.Status != "" && f.Status != projections.StatusParked && f.Status != projections.StatusRedriven && f.Status != projections.StatusDiscarded {
		return nil, badParam("status", "parked, redriven or discarded, got %q", f.Status)
	}
	list, err := h.svc.DeadLetters(c.ctx, f)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(list))
	for _, p := range list {
		items = append(items, View(p, nil))
	}
	var next *string
	if len(list) == f.Limit {
		s := strconv.FormatInt(list[len(list)-1].ID, 10)
		next = &s
	}
	return map[string]any{"items": items, "next_before": next}, nil
}

func (h *handler) deadLetter(c *call) (any, error) {
	if _, err := params(c); err != nil {
		return nil, err
	}
	id, err := pathID(c)
	if err != nil {
		return nil, err
	}
	d, err := h.svc.DeadLetter(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return View(d.Parked, d.Event), nil
}

func (h *handler) redrive(c *call) (any, error) {
	if _, err := params(c); err != nil {
		return nil, err
	}
	id, err := pathID(c)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.Redrive(c.ctx, id, c.op)
	if err != nil {
		return nil, err
	}
	return map[string]any{"dead_letter": View(res.DeadLetter, nil), "recomputed": res.Recomputed}, nil
}

func (h *handler) discard(c *call) (any, error) {
	if _, err := params(c); err != nil {
		return nil, err
	}
	id, err := pathID(c)
	if err != nil {
		return nil, err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	dec := json.NewDecoder(io.LimitReader(c.r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_body", message: `body: want {"reason": "..."}: ` + err.Error()}
	}
	if strings.TrimSpace(body.Reason) == "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_body", param: "reason", message: "reason: required, 1-256 characters (no personal data)"}
	}
	res, err := h.svc.Discard(c.ctx, id, body.Reason, c.op)
	if err != nil {
		return nil, err
	}
	return map[string]any{"dead_letter": View(res.DeadLetter, nil), "event_id": res.EventID, "stream": res.Stream,
		"seq": res.Seq, "repeated": res.Repeated}, nil
}

func (h *handler) history(c *call) (any, error) {
	p, err := params(c, "from", "to", "type", "reveal", "limit")
	if err != nil {
		return nil, err
	}
	q := HistoryQuery{Customer: c.r.PathValue("id")}
	for _, name := range []string{"from", "to"} {
		v, ok := p[name]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, badParam(name, "an RFC 3339 time such as 2026-11-01T00:00:00+08:00, got %q", v)
		}
		if name == "from" {
			q.From = t
		} else {
			q.To = t
		}
	}
	if v, ok := p["type"]; ok {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				q.Types = append(q.Types, t)
			}
		}
	}
	if v, ok := p["reveal"]; ok {
		if q.Reveal, err = strconv.ParseBool(v); err != nil {
			return nil, badParam("reveal", "true or false, got %q", v)
		}
	}
	if v, ok := p["limit"]; ok {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 1 || q.Limit > 10000 {
			return nil, badParam("limit", "an integer 1-10000, got %q", v)
		}
	}
	entries, err := h.svc.History(c.ctx, q, c.op)
	if err != nil {
		return nil, err
	}
	return map[string]any{"customer_id": q.Customer, "items": entries}, nil
}

func (h *handler) erase(c *call) (any, error) {
	if _, err := params(c); err != nil {
		return nil, err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	dec := json.NewDecoder(io.LimitReader(c.r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_body", message: `body: want {"reason": "customer_request"}: ` + err.Error()}
	}
	return h.svc.Erase(c.ctx, c.r.PathValue("id"), body.Reason, c.op)
}
