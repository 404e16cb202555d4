package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/dedup"
)

// Gateway is the ingest gateway: the one door of untrusted channel systems to the log.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	catalog  *events.Catalog
	nc       *nats.Conn
	pub      *events.Publisher
	index    dedup.Querier
	metrics  *metrics
	listener net.Listener

	byName map[string]*channel
	byKey  map[string]*channel // SHA-256 hex of the key -> channel

	inflight *semaphore.Weighted

	dedupLastLog  atomic.Int64 // unix nanos of the last logged lookup failure
	dedupFailures atomic.Int64 // failures since then

	handlers sync.WaitGroup // NATS requests in progress
}

// channel is a configured channel with its door and rate limiter.
type channel struct {
	Channel
	door    *events.Door
	limiter *rate.Limiter
	keyIDs  map[string]string // key hash -> key id, for logs
}

// New builds a gateway. It does not start serving: call Run.
func New(cfg Config, deps Deps) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, errors.New("gateway: Deps.NATS: required")
	}
	if err := deps.Layout.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: Deps.Layout: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cat := deps.Catalog
	if cat == nil {
		var err error
		if cat, err = events.DefaultCatalog(); err != nil {
			return nil, fmt.Errorf("gateway: catalog: %w", err)
		}
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	// The publisher only sends what the channels' doors prepared: it needs neither keys
	// nor a source of its own.
	pub, err := events.NewPublisher(context.Background(), deps.NATS,
		events.WithLayout(deps.Layout), events.WithCatalog(cat), events.WithLimits(cfg.Limits),
		events.WithMaxInFlight(min(cfg.MaxInFlight, 1<<20)), events.WithAckTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("gateway: publisher: %w", err)
	}
	g := &Gateway{
		cfg: cfg, log: log, catalog: cat, nc: deps.NATS, pub: pub, index: deps.Dedup, metrics: m, listener: deps.Listener,
		byName:   make(map[string]*channel, len(cfg.Channels)),
		byKey:    map[string]*channel{},
		inflight: semaphore.NewWeighted(int64(cfg.MaxInFlight)),
	}
	known := map[string]bool{}
	for _, t := range cat.Types() {
		known[t] = true
	}
	for _, c := range cfg.Channels {
		limits := cfg.Limits
		if c.MaxAge > 0 {
			limits.MaxAge = time.Duration(c.MaxAge)
		}
		v := events.NewValidator(cat, deps.Layout.Partitions, limits, deps.Now)
		ch := &channel{Channel: c, door: events.NewDoor(deps.Layout, v, deps.Keys, true), keyIDs: map[string]string{}}
		if r := c.RateLimit; r != nil {
			ch.limiter = rate.NewLimiter(rate.Limit(r.EventsPerSecond), r.Burst)
		}
		for _, k := range c.APIKeys {
			g.byKey[k.SHA256] = ch
			ch.keyIDs[k.SHA256] = k.ID
		}
		g.byName[c.Name] = ch
		for _, t := range c.AllowedTypes {
			if !known[t] && !typeFamily.MatchString(t) {
				log.Warn("channel allows a type the catalog does not know yet: its events are refused until a schema exists",
					"channel", c.Name, "event_type", t)
			}
		}
	}
	if deps.Keys == nil {
		log.Warn("no key source: events with personal fields will fail with data key unavailable")
	}
	if deps.Dedup == nil {
		log.Warn("no idempotency index: duplicates are caught only within the stream's duplicate window")
	}
	return g, nil
}

// Response is the answer to a request, over HTTP and NATS alike.
type Response struct {
	// Status is the HTTP-equivalent status code (NATS replies only; HTTP has it in the
	// status line).
	Status     int      `json:"status,omitempty"`
	RequestID  string   `json:"request_id"`
	Error      string   `json:"error,omitempty"`
	RetryAfter int      `json:"retry_after,omitempty"` // seconds, with 429 and 503
	Results    []Result `json:"results,omitempty"`
	Stored     int      `json:"stored"`
	Duplicates int      `json:"duplicates"`
	Refused    int      `json:"refused"`
	Unknown    int      `json:"unknown"`
	Failed     int      `json:"failed"`
}

// Result is the outcome of one event of a request.
type Result struct {
	Index  int                 `json:"index"`
	ID     string              `json:"id,omitempty"`
	Status string              `json:"status"`
	Stream string              `json:"stream,omitempty"`
	Seq    uint64              `json:"seq,omitempty"`
	Errors []events.FieldError `json:"errors,omitempty"`
	Reason string              `json:"reason,omitempty"`
}

const reasonUnknown = "acknowledgement not received in time; retrying with the same id is safe"

// ingest stores the events of one request for a channel and answers each. It never
// fails as a whole: every event gets an outcome. The caller holds the in-flight budget.
func (g *Gateway) ingest(ctx context.Context, ch *channel, in []input, reqID string) (*Response, int) {
	res := make([]Result, len(in))
	forbidden := 0
	// Decoded and authorized events, in request order.
	idx := make([]int, 0, len(in))
	evs := make([]*events.Event, 0, len(in))
	for i, x := range in {
		res[i].Index = i
		if x.ev == nil {
			res[i].Status, res[i].Errors = StatusRefused, x.errs
			continue
		}
		res[i].ID = x.ev.ID
		if fe := g.authorize(ch, x.ev); fe != nil {
			res[i].Status, res[i].Errors = StatusRefused, fe
			forbidden++
			g.metrics.events.WithLabelValues(ch.Name, outcomeForbidden).Inc()
			continue
		}
		idx = append(idx, i)
		evs = append(evs, x.ev)
	}

	// The durable index: one query for the request's keys.
	if hits := g.lookup(ctx, evs, reqID); len(hits) > 0 {
		k := 0
		for j, e := range evs {
			if h, ok := hits[e.DedupKey()]; ok {
				i := idx[j]
				res[i].Status, res[i].Stream, res[i].Seq = StatusDuplicate, h.Stream, h.Seq
				continue
			}
			idx[k], evs[k] = idx[j], e
			k++
		}
		g.metrics.dedupHits.Add(float64(len(evs) - k))
		idx, evs = idx[:k], evs[:k]
	}

	if len(evs) > 0 {
		msgs, errs := ch.door.Prepare(ctx, evs)
		results := g.pub.SendPrepared(ctx, msgs, errs)
		for j, r := range results {
			g.result(&res[idx[j]], r, ch, reqID) // refusals come redacted from the door
		}
	}

	resp := &Response{RequestID: reqID, Results: res}
	for i := range res {
		switch res[i].Status {
		case StatusStored:
			resp.Stored++
		case StatusDuplicate:
			resp.Duplicates++
		case StatusRefused:
			resp.Refused++
		case StatusUnknown:
			resp.Unknown++
		case StatusFailed:
			resp.Failed++
		}
	}
	for _, s := range [...]struct {
		outcome string
		n       int
	}{{StatusStored, resp.Stored}, {StatusDuplicate, resp.Duplicates}, {StatusRefused, resp.Refused - forbidden},
		{StatusUnknown, resp.Unknown}, {StatusFailed, resp.Failed}} {
		if s.n > 0 {
			g.metrics.events.WithLabelValues(ch.Name, s.outcome).Add(float64(s.n))
		}
	}
	code := statusCode(resp, forbidden, len(in))
	if code == http.StatusServiceUnavailable {
		resp.RetryAfter = retrySeconds(g.cfg.RetryAfter)
	}
	return resp, code
}

// statusCode maps the outcomes of a request to its HTTP status.
func statusCode(r *Response, forbidden, n int) int {
	ok := r.Stored + r.Duplicates
	switch {
	case ok == n:
		return http.StatusOK
	case forbidden == n:
		return http.StatusForbidden
	case ok > 0:
		return http.StatusMultiStatus
	case r.Refused > 0:
		return http.StatusUnprocessableEntity
	default:
		// Nothing stored and nothing wrong with the events: every one is unknown or
		// failed for a passing reason. Retrying the whole request is safe.
		return http.StatusServiceUnavailable
	}
}

// authorize checks the channel's rights: its own source, its allowed types.
func (g *Gateway) authorize(ch *channel, e *events.Event) events.FieldErrors {
	var fe events.FieldErrors
	if e.Source != ch.Source {
		fe = append(fe, events.FieldError{Field: "/source", Reason: fmt.Sprintf("channel %s writes only under its own source %q", ch.Name, ch.Source)})
	}
	if !ch.allows(e.Type) {
		fe = append(fe, events.FieldError{Field: "/type", Reason: fmt.Sprintf("channel %s may not write this type", ch.Name)})
	}
	return fe
}

// result turns a publisher result into the event's outcome.
func (g *Gateway) result(out *Result, r events.Result, ch *channel, reqID string) {
	var fe events.FieldErrors
	switch {
	case r.Err == nil && r.Duplicate:
		out.Status, out.Stream, out.Seq = StatusDuplicate, r.Stream, r.Seq
	case r.Err == nil:
		out.Status, out.Stream, out.Seq = StatusStored, r.Stream, r.Seq
	case errors.As(r.Err, &fe):
		out.Status, out.Errors = StatusRefused, fe
	case errors.Is(r.Err, events.ErrAckUnknown):
		out.Status, out.Reason = StatusUnknown, reasonUnknown
		g.log.Warn("event acknowledgement unknown", "request_id", reqID, "channel", ch.Name, "event_id", out.ID, "error", r.Err)
	case errors.Is(r.Err, events.ErrKeyUnavailable):
		out.Status, out.Reason = StatusFailed, "data key unavailable to seal personal fields; not stored, retry later"
		g.log.Warn("event not sealed", "request_id", reqID, "channel", ch.Name, "event_id", out.ID, "error", r.Err)
	case errors.Is(r.Err, events.ErrStreamRefused):
		out.Status, out.Reason = StatusFailed, r.Err.Error()+"; not stored"
		g.log.Warn("stream refused event", "request_id", reqID, "channel", ch.Name, "event_id", out.ID, "error", r.Err)
	case errors.Is(r.Err, events.ErrClosed):
		out.Status, out.Reason = StatusFailed, "gateway shutting down; not stored, retry"
	default:
		out.Status, out.Reason = StatusFailed, "internal error; not stored, retry later (request "+reqID+")"
		g.log.Error("event failed", "request_id", reqID, "channel", ch.Name, "event_id", out.ID, "error", r.Err)
	}
}

// lookup asks the durable index which events are already stored. A failing index is
// skipped: the log does not need PostgreSQL, and the stream's duplicate window still
// catches quick retries.
func (g *Gateway) lookup(ctx context.Context, evs []*events.Event, reqID string) map[string]dedup.Hit {
	if g.index == nil || len(evs) == 0 {
		return nil
	}
	keys := make([]string, len(evs))
	for i, e := range evs {
		keys[i] = e.DedupKey()
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DedupTimeout)
	defer cancel()
	g.metrics.dedupLookups.Inc()
	hits, err := dedup.Lookup(ctx, g.index, keys)
	if err != nil {
		g.metrics.dedupFailures.Inc()
		n := g.dedupFailures.Add(1)
		now := time.Now().UnixNano()
		last := g.dedupLastLog.Load()
		if now-last >= int64(g.cfg.DedupLogInterval) && g.dedupLastLog.CompareAndSwap(last, now) {
			g.dedupFailures.Add(-n)
			g.log.Warn("idempotency index lookup failed: skipped, only the stream's duplicate window applies",
				"request_id", reqID, "failures", n, "error", err)
		}
		return nil
	}
	return hits
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID keeps a well-formed id given by the client, or mints one.
func requestID(given string) string {
	if requestIDPattern.MatchString(given) {
		return given
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// logLevel keeps the log quiet for requests that went well: debug for 2xx, info for
// the client's mistakes, warn for what the client should retry.
func logLevel(code int) slog.Level {
	switch {
	case code < 300:
		return slog.LevelDebug
	case code >= 500 || code == http.StatusTooManyRequests:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
