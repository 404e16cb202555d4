package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/erase"
)

// Source is the CloudEvents source of the events the ops tools publish
// (deadletter.discarded).
const Source = "urn:touchstream:service:ops"

// DefaultTimeline is the customer index's target when Deps.Timeline is empty and no
// serving version of "timeline" is recorded.
const DefaultTimeline = "timeline_v1"

// Deps are what the operations need.
type Deps struct {
	Pool    *pgxpool.Pool
	JS      jetstream.JetStream
	Layout  events.Layout
	Catalog *events.Catalog
	// Timeline is the timeline target used as the customer index. "": the serving
	// version of "timeline" (projections.serving), else DefaultTimeline.
	Timeline string
	// Projections are the targets a dead letter can be redriven into; a dead letter of
	// any other target is refused.
	Projections []projections.Projection
	// Resolve builds the projection of a target not in Projections (for example a
	// version built by a rebuild). nil: only Projections can be redriven into.
	Resolve func(target string) (projections.Projection, error)
	// Publisher appends discards to the log. nil: discards are refused.
	Publisher *events.Publisher
	// Keys opens personal fields for operators allowed to see them. nil: reveal refused.
	Keys events.KeySource
	// Eraser erases customers' personal data. nil: erasures refused.
	Eraser *erase.Eraser
	Log    *slog.Logger
}

// Operator is who asks, and what they may see.
type Operator struct {
	// ID names the operator in the discard events and the logs: an account id, never a
	// name or a phone number (1-64 characters of A-Z a-z 0-9 _ . : -).
	ID string
	// Reveal: the operator may see personal fields in clear.
	Reveal bool
	// Erase: the operator may erase a customer's personal data.
	Erase bool
}

var operatorID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// Service runs the operations.
type Service struct {
	d       Deps
	decoder *projections.Decoder
	log     *slog.Logger
}

// Errors callers map to answers.
var (
	// ErrInvalid: an argument is wrong; the message names it.
	ErrInvalid = errors.New("invalid argument")
	// ErrForbidden: the operator may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the service was built without what this needs.
	ErrUnavailable = errors.New("unavailable")
)

// New returns the service.
func New(d Deps) (*Service, error) {
	var errs []error
	if d.Pool == nil {
		errs = append(errs, errors.New("ops: Deps.Pool: required"))
	}
	if d.JS == nil {
		errs = append(errs, errors.New("ops: Deps.JS: required"))
	}
	if err := d.Layout.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ops: Deps.Layout: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Catalog == nil {
		cat, err := events.DefaultCatalog()
		if err != nil {
			return nil, fmt.Errorf("ops: event catalog: %w", err)
		}
		d.Catalog = cat
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{d: d, decoder: projections.NewDecoder(d.Layout, d.Catalog), log: d.Log}, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// timeline returns the customer index's target.
func (s *Service) timeline(ctx context.Context) (string, error) {
	if s.d.Timeline != "" {
		return s.d.Timeline, nil
	}
	var t *string
	err := s.d.Pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass('projections.serving') IS NULL THEN NULL
		ELSE (SELECT target FROM projections.serving WHERE projection = 'timeline') END`).Scan(&t)
	if err != nil {
		return "", fmt.Errorf("serving timeline: %w", err)
	}
	if t == nil || *t == "" {
		return DefaultTimeline, nil
	}
	return *t, nil
}

func (s *Service) recomputer(ctx context.Context) (*projections.Recomputer, error) {
	tl, err := s.timeline(ctx)
	if err != nil {
		return nil, err
	}
	return &projections.Recomputer{Pool: s.d.Pool, Layout: s.d.Layout, History: &projections.LogHistory{
		Index: &timeline.Index{Target: tl, Layout: s.d.Layout}, JS: s.d.JS, Decoder: s.decoder}}, nil
}

// ---- dead letters ----

// DeadLetterFilter selects dead letters.
type DeadLetterFilter = projections.DeadLetterFilter

// DeadLetters lists dead letters, newest first.
func (s *Service) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]projections.Parked, error) {
	if f.Status != "" && f.Status != projections.StatusParked && f.Status != projections.StatusRedriven && f.Status != projections.StatusDiscarded {
		return nil, invalid("status %q: must be parked, redriven or discarded", f.Status)
	}
	if f.Limit < 0 || f.Limit > 1000 {
		return nil, invalid("limit %d: must be 1-1000", f.Limit)
	}
	return projections.ListDeadLetters(ctx, s.d.Pool, f)
}

// DeadLetter is one dead letter with its event, read from the log.
type DeadLetter struct {
	projections.Parked
	// Event is the parked event as stored, decoded (personal fields sealed); nil when
	// the message is no longer in the stream.
	Event *Entry
}

// DeadLetter returns one dead letter and its event, fetched from the stream by
// sequence. The error matches projections.ErrDeadLetterNotFound when there is none.
func (s *Service) DeadLetter(ctx context.Context, id int64) (*DeadLetter, error) {
	p, err := projections.GetDeadLetter(ctx, s.d.Pool, id)
	if err != nil {
		return nil, err
	}
	out := &DeadLetter{Parked: p}
	st, err := s.d.JS.Stream(ctx, p.Stream)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: stream %s: %w", id, p.Stream, err)
	}
	e, err := s.entry(ctx, st, p.Stream, p.Seq, Operator{}, false)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	out.Event = e
	return out, nil
}

// Redriven is the outcome of a redrive.
type Redriven struct {
	DeadLetter projections.Parked     `json:"dead_letter"`
	Recomputed projections.Recomputed `json:"recomputed"`
}

// Redrive applies a parked event by recomputing its customer in its target. See
// projections.Recomputer.Redrive: an error matching projections.ErrStillFailing means
// the projection still cannot apply it (attempts+1, new error recorded).
func (s *Service) Redrive(ctx context.Context, id int64, op Operator) (*Redriven, error) {
	rc, err := s.recomputer(ctx)
	if err != nil {
		return nil, err
	}
	d, err := projections.GetDeadLetter(ctx, s.d.Pool, id)
	if err != nil {
		return nil, err
	}
	projs := s.d.Projections
	if !slices.ContainsFunc(projs, func(p projections.Projection) bool { return p.Target() == d.Target }) && s.d.Resolve != nil {
		p, err := s.d.Resolve(d.Target)
		if err != nil {
			return nil, fmt.Errorf("redrive dead letter %d: target %s: %w", id, d.Target, err)
		}
		projs = []projections.Projection{p}
	}
	res, err := rc.Redrive(ctx, id, projs...)
	if err != nil {
		s.log.Warn("redrive failed", "dead_letter", id, "operator", op.ID, "error", err)
		return nil, err
	}
	p, err := projections.GetDeadLetter(ctx, s.d.Pool, id)
	if err != nil {
		return nil, err
	}
	s.log.Info("dead letter redriven", "dead_letter", id, "target", p.Target, "stream_seq", p.Seq,
		"customer_id", p.Customer, "operator", op.ID, "events", res.Events)
	return &Redriven{DeadLetter: p, Recomputed: res}, nil
}

// Discarded is the outcome of a discard.
type Discarded struct {
	DeadLetter projections.Parked `json:"dead_letter"`
	// The deadletter.discarded event in the log.
	EventID  string `json:"event_id"`
	Stream   string `json:"stream"`
	Seq      uint64 `json:"seq"`
	Repeated bool   `json:"repeated"` // the log already held this discard (a retry)
}

// Discard records the discard of a parked event as a deadletter.discarded event in the
// log, then marks the dead letter 'discarded'.
func (s *Service) Discard(ctx context.Context, id int64, reason string, op Operator) (*Discarded, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || utf8.RuneCountInString(reason) > 256 {
		return nil, invalid("reason: required, 1-256 characters (no personal data)")
	}
	if !operatorID.MatchString(op.ID) {
		return nil, invalid("operator %q: 1-64 characters of A-Z a-z 0-9 _ . : - (an account id, not a name)", op.ID)
	}
	if s.d.Publisher == nil {
		return nil, fmt.Errorf("%w: discard: no publisher configured", ErrUnavailable)
	}
	p, err := projections.GetDeadLetter(ctx, s.d.Pool, id)
	if err != nil {
		return nil, err
	}
	if p.Status != projections.StatusParked {
		return nil, fmt.Errorf("discard dead letter %d: status is %s: %w", id, p.Status, projections.ErrNotParked)
	}
	if p.Customer == "" || p.EventSource == "" || p.EventID == "" {
		return nil, fmt.Errorf("discard dead letter %d (seq=%d): %w: fix the projection and rebuild the target", id, p.Seq, projections.ErrNoCustomer)
	}
	ev, err := events.NewEvent(p.Customer, time.Now(), events.DeadLetterDiscarded{Target: p.Target, Stream: p.Stream, Seq: p.Seq,
		Event: events.EventRef{Source: p.EventSource, ID: p.EventID}, Type: p.EventType, Reason: reason, Operator: op.ID})
	if err != nil {
		return nil, fmt.Errorf("discard dead letter %d: %w", id, err)
	}
	ev.Source, ev.ID = Source, discardID(p)
	r, err := s.d.Publisher.Publish(ctx, ev)
	if err != nil {
		return nil, fmt.Errorf("discard dead letter %d: publish %s: %w", id, events.TypeDeadLetterDiscarded, err)
	}
	if err := projections.MarkDiscarded(ctx, s.d.Pool, id); err != nil {
		return nil, err
	}
	if p, err = projections.GetDeadLetter(ctx, s.d.Pool, id); err != nil {
		return nil, err
	}
	s.log.Info("dead letter discarded", "dead_letter", id, "target", p.Target, "stream_seq", p.Seq,
		"customer_id", p.Customer, "operator", op.ID, "event_id", ev.ID, "discard_seq", r.Seq)
	return &Discarded{DeadLetter: p, EventID: ev.ID, Stream: r.Stream, Seq: r.Seq, Repeated: r.Duplicate}, nil
}

// discardID is the id of a dead letter's discard event: one per (target, stream, seq).
func discardID(p projections.Parked) string {
	return "discard:" + p.Target + ":" + p.Stream + ":" + strconv.FormatUint(p.Seq, 10)
}

// ---- erasure ----

// Erase erases a customer's personal data (erase.Eraser.Erase), recorded under the
// operator's id. The operator must be allowed to (Operator.Erase).
func (s *Service) Erase(ctx context.Context, customer, reason string, op Operator) (*erase.Receipt, error) {
	if !op.Erase {
		return nil, fmt.Errorf("%w: operator %s may not erase personal data", ErrForbidden, op.ID)
	}
	if s.d.Eraser == nil {
		return nil, fmt.Errorf("%w: erase: no eraser configured", ErrUnavailable)
	}
	return s.d.Eraser.Erase(ctx, erase.Request{Customer: customer, Reason: reason, Operator: op.ID})
}

// ---- history ----

// HistoryQuery selects a customer's events.
type HistoryQuery struct {
	Customer string
	From, To time.Time // event time range [From, To); open when zero
	Types    []string  // any of these types; all when empty
	Reveal   bool      // personal fields in clear (Operator.Reveal required)
	Limit    int       // 1-10000, default 1000: the oldest first
}

// Entry is one event as the ops tools show it.
type Entry struct {
	Seq        uint64          `json:"seq"`
	Stream     string          `json:"stream"`
	StoredAt   time.Time       `json:"stored_at"`
	Time       time.Time       `json:"time"`
	Type       string          `json:"type"`
	Source     string          `json:"source"`
	ID         string          `json:"id"`
	Subject    string          `json:"subject,omitempty"`
	Partition  int             `json:"partition"`
	DataSchema string          `json:"dataschema"`
	Data       json.RawMessage `json:"data"`
	// Personal says how personal fields appear in data: "none" (the type has none),
	// "sealed" (each replaced by "[sealed]"), "revealed" (in clear), "erased" (their key
	// was erased: null).
	Personal         string  `json:"personal"`
	RetractedBy      *uint64 `json:"retracted_by,omitempty"`
	RetractionReason string  `json:"retraction_reason,omitempty"`
	// Error: the stored message does not decode or validate (it was parked, never
	// folded); Data then holds nothing.
	Error string `json:"error,omitempty"`
}

// History returns a customer's events in stream order: sequences from the timeline
// index (filtered by time and type there), each message fetched from the log directly
// and decoded. Personal fields stay sealed unless q.Reveal and op.Reveal.
func (s *Service) History(ctx context.Context, q HistoryQuery, op Operator) ([]Entry, error) {
	if !events.ValidCustomerID(q.Customer) {
		return nil, invalid("customer id %q: must be 1-64 characters of A-Z a-z 0-9 _ -", q.Customer)
	}
	if q.Reveal && !op.Reveal {
		return nil, fmt.Errorf("%w: operator %q may not see personal fields in clear", ErrForbidden, op.ID)
	}
	if q.Reveal && s.d.Keys == nil {
		return nil, fmt.Errorf("%w: reveal: no key service configured", ErrUnavailable)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, invalid("to %s: must be after from %s", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	for _, t := range q.Types {
		if _, ok := s.d.Catalog.Latest(t); !ok {
			return nil, invalid("type %q: not an event type of the catalog", t)
		}
	}
	limit := q.Limit
	if limit == 0 {
		limit = 1000
	}
	if limit < 1 || limit > 10000 {
		return nil, invalid("limit %d: must be 1-10000", q.Limit)
	}
	tl, err := s.timeline(ctx)
	if err != nil {
		return nil, err
	}
	args := []any{q.Customer}
	where := []string{"customer_id = $1"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if len(q.Types) > 0 {
		add("type = ANY(?)", q.Types)
	}
	if !q.From.IsZero() {
		add("event_time >= ?", q.From)
	}
	if !q.To.IsZero() {
		add("event_time < ?", q.To)
	}
	args = append(args, limit)
	rows, err := s.d.Pool.Query(ctx, `SELECT seq, stream, retracted_by, coalesce(retraction_reason, '')
		FROM `+pgx.Identifier{tl, "events"}.Sanitize()+` WHERE `+strings.Join(where, " AND ")+`
		ORDER BY seq LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("history of customer %s: index %s: %w", q.Customer, tl, err)
	}
	type ref struct {
		seq     uint64
		stream  string
		by      *uint64
		reasons string
	}
	refs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ref, error) {
		var x ref
		var seq int64
		var by *int64
		err := r.Scan(&seq, &x.stream, &by, &x.reasons)
		x.seq = uint64(seq)
		if by != nil {
			v := uint64(*by)
			x.by = &v
		}
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of customer %s: index %s: %w", q.Customer, tl, err)
	}
	streams := map[string]jetstream.Stream{}
	out := make([]Entry, 0, len(refs))
	for _, x := range refs {
		st, ok := streams[x.stream]
		if !ok {
			if st, err = s.d.JS.Stream(ctx, x.stream); err != nil {
				return nil, fmt.Errorf("history of customer %s: stream %s: %w", q.Customer, x.stream, err)
			}
			streams[x.stream] = st
		}
		e, err := s.entry(ctx, st, x.stream, x.seq, op, q.Reveal)
		if err != nil {
			return nil, fmt.Errorf("history of customer %s: %w", q.Customer, err)
		}
		if e.Error == "" && e.Subject != q.Customer {
			return nil, fmt.Errorf("history of customer %s: index %s maps seq=%d to another customer", q.Customer, tl, x.seq)
		}
		e.RetractedBy, e.RetractionReason = x.by, x.reasons
		out = append(out, *e)
	}
	if q.Reveal {
		s.log.Info("personal fields revealed", "customer_id", q.Customer, "operator", op.ID, "events", len(out))
	}
	return out, nil
}

// entry fetches one message by sequence and presents it.
func (s *Service) entry(ctx context.Context, st jetstream.Stream, stream string, seq uint64, op Operator, reveal bool) (*Entry, error) {
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("get %s seq=%d: %w", stream, seq, err)
	}
	env, err := s.decoder.Decode(stream, m.Subject, m.Sequence, m.Time, m.Data)
	if err != nil {
		e := &Entry{Seq: seq, Stream: stream, StoredAt: m.Time, Error: err.Error(), Personal: "sealed", Data: json.RawMessage("null")}
		var de *projections.DecodeError
		if errors.As(err, &de) {
			e.Partition = de.Partition
			if de.Event != nil {
				e.Time, e.Type, e.Source, e.ID, e.Subject = de.Event.Time, de.Event.Type, de.Event.Source, de.Event.ID, de.Event.Subject
			}
		}
		return e, nil
	}
	e := &Entry{Seq: seq, Stream: stream, StoredAt: env.StoredAt, Time: env.Time, Type: env.Type, Source: env.Source, ID: env.ID,
		Subject: env.Subject, Partition: env.Partition, DataSchema: env.DataSchema, Data: env.Data, Personal: "none"}
	if !env.Schema.HasPersonal() {
		return e, nil
	}
	if reveal && op.Reveal && s.d.Keys != nil {
		data, err := events.NewSealer(s.d.Keys).Reveal(ctx, env.Schema, &env.Event)
		switch {
		case errors.Is(err, events.ErrErased):
			e.Data, e.Personal = data, "erased"
		case err != nil:
			return nil, fmt.Errorf("%w: reveal seq=%d: %w", ErrUnavailable, seq, err)
		default:
			e.Data, e.Personal = data, "revealed"
		}
		return e, nil
	}
	data, err := sealPersonal(env.Data, env.Schema.Personal)
	if err != nil {
		return nil, fmt.Errorf("seq=%d: %w", seq, err)
	}
	e.Data, e.Personal = data, "sealed"
	return e, nil
}

// sealPersonal replaces every present personal field by the string "[sealed]".
func sealPersonal(data json.RawMessage, pointers []string) (json.RawMessage, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	for _, ptr := range pointers {
		toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
		cur := doc
		for _, t := range toks[:len(toks)-1] {
			next, ok := cur[unescape(t)].(map[string]any)
			if !ok {
				cur = nil
				break
			}
			cur = next
		}
		if cur == nil {
			continue
		}
		last := unescape(toks[len(toks)-1])
		if _, ok := cur[last]; ok {
			cur[last] = "[sealed]"
		}
	}
	return json.Marshal(doc)
}

func unescape(s string) string { return strings.NewReplacer("~1", "/", "~0", "~").Replace(s) }
