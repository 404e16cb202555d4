package redeem

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
)

// Redemption is the API's view of a redemption (a reservation and its events).
type Redemption struct {
	ID             string          `json:"id"`
	CustomerID     string          `json:"customer_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Points         int64           `json:"points"`
	Partner        string          `json:"partner"`
	Item           string          `json:"item"`
	Status         string          `json:"status"`
	CreatedAt      time.Time       `json:"created_at"`
	Event          events.EventRef `json:"event"`
	StreamSeq      *int64          `json:"stream_seq"`
	Reversal       *Reversal       `json:"reversal"`
}

// Reversal is a redemption's reversal: the event.retracted that gives its points back.
type Reversal struct {
	Reason      string          `json:"reason"`
	Status      string          `json:"status"` // pending or published
	RequestedAt time.Time       `json:"requested_at"`
	Event       events.EventRef `json:"event"`
	StreamSeq   *int64          `json:"stream_seq"`
}

func (r *reservation) view() Redemption {
	v := Redemption{ID: r.ID, CustomerID: r.Customer, IdempotencyKey: r.Key, Points: r.Points, Partner: r.Partner,
		Item: r.Item, Status: r.Status, CreatedAt: r.CreatedAt.UTC(), Event: events.EventRef{Source: r.EventSource, ID: r.EventID},
		StreamSeq: r.Seq}
	if r.ReversalStatus != nil && r.ReversalReason != nil && r.ReversalEventID != nil && r.ReversedAt != nil {
		v.Reversal = &Reversal{Reason: *r.ReversalReason, Status: *r.ReversalStatus, RequestedAt: r.ReversedAt.UTC(),
			Event: events.EventRef{Source: r.EventSource, ID: *r.ReversalEventID}, StreamSeq: r.ReversalSeq}
	}
	return v
}

// Field limits, as the points.redeemed and event.retracted schemas state them.
const (
	maxPoints    = 100_000_000
	maxItem      = 128
	maxReason    = 256
	maxKeyLength = 128
)

var (
	refPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	keyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// redeemRequest is the body of POST .../redemptions.
type redeemRequest struct {
	IdempotencyKey *string `json:"idempotency_key"`
	Points         *int64  `json:"points"`
	Partner        *string `json:"partner"`
	Item           *string `json:"item"`
}

// reversalRequest is the body of POST .../reversal.
type reversalRequest struct {
	Reason *string `json:"reason"`
}

// readJSON decodes the request body into v strictly: JSON content type (415), at most
// MaxBodyBytes (413), one object, no unknown fields, each field of its type (400
// naming the field).
func (s *Server) readJSON(c *call, v any) error {
	ct := c.r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return &apiError{status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType, param: "Content-Type",
			message: fmt.Sprintf("Content-Type: must be application/json, got %q", truncate(ct, 64))}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, c.r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge, param: "body",
				message: fmt.Sprintf("body: larger than %d bytes", s.cfg.MaxBodyBytes)}
		}
		return fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return badParam(te.Field, "must be %s, got %s", jsonKind(te.Type.String()), te.Value)
		case errors.As(err, &te):
			return badParam("body", "must be a JSON object")
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return badParam("body", "not valid JSON")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badParam(name, "unknown field")
		default:
			return badParam("body", "not valid JSON")
		}
	}
	if dec.More() {
		return badParam("body", "must hold one JSON object only")
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"):
		return "an integer"
	case strings.Contains(goType, "string"):
		return "a string"
	}
	return "of another type"
}

// text checks a free-text field: present, 1..max characters, no control characters.
func text(name string, v *string, max int) (string, error) {
	if v == nil || *v == "" {
		return "", badParam(name, "required")
	}
	if !utf8.ValidString(*v) {
		return "", badParam(name, "must be UTF-8")
	}
	if n := utf8.RuneCountInString(*v); n > max {
		return "", badParam(name, "%d characters, at most %d allowed", n, max)
	}
	if strings.IndexFunc(*v, unicode.IsControl) >= 0 {
		return "", badParam(name, "must not contain control characters")
	}
	return *v, nil
}

// idempotencyKey takes the key from the body or the Idempotency-Key header; when both
// are given they must agree.
func idempotencyKey(c *call, body *string) (string, error) {
	header := c.r.Header.Values("Idempotency-Key")
	if len(header) > 1 {
		return "", badParam("Idempotency-Key", "given more than once")
	}
	var key string
	switch {
	case body != nil && len(header) == 1 && *body != header[0]:
		return "", badParam("idempotency_key", "differs from the Idempotency-Key header")
	case body != nil:
		key = *body
	case len(header) == 1:
		key = header[0]
	default:
		return "", badParam("idempotency_key", "required (in the body or the Idempotency-Key header)")
	}
	if !keyPattern.MatchString(key) {
		return "", badParam("idempotency_key", "must be 1 to %d printable ASCII characters without spaces", maxKeyLength)
	}
	return key, nil
}

// postRedemption reserves points and publishes points.redeemed.
func (s *Server) postRedemption(c *call) (*reply, error) {
	customer := c.r.PathValue("customer_id")
	if !events.ValidCustomerID(customer) {
		return nil, badParam("customer_id", "must be 1 to 64 characters of A-Z a-z 0-9 _ -")
	}
	c.customer = customer
	var req redeemRequest
	if err := s.readJSON(c, &req); err != nil {
		return nil, err
	}
	key, err := idempotencyKey(c, req.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Points == nil:
		return nil, badParam("points", "required")
	case *req.Points < 1:
		return nil, badParam("points", "must be at least 1, got %d", *req.Points)
	case *req.Points > maxPoints:
		return nil, badParam("points", "must be at most %d, got %d", maxPoints, *req.Points)
	}
	if req.Partner == nil || *req.Partner == "" {
		return nil, badParam("partner", "required")
	}
	if !refPattern.MatchString(*req.Partner) {
		return nil, badParam("partner", "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")
	}
	item, err := text("item", req.Item, maxItem)
	if err != nil {
		return nil, err
	}
	want := reservation{Customer: customer, Key: key, Points: *req.Points, Partner: *req.Partner, Item: item}

	target, err := s.loyaltyTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	r, fresh, insufficient, err := s.reserve(c.ctx, target, want)
	if err != nil {
		return nil, err
	}
	if insufficient != nil {
		s.m.outcomes.WithLabelValues("insufficient").Inc()
		return nil, &apiError{status: http.StatusConflict, code: codeInsufficientPoints, param: "points", available: insufficient,
			message: fmt.Sprintf("points: %d requested, %d available", want.Points, *insufficient)}
	}
	if !fresh && (r.Points != want.Points || r.Partner != want.Partner || r.Item != want.Item) {
		return nil, &apiError{status: http.StatusConflict, code: codeIdempotencyConflict, param: "idempotency_key",
			message: "idempotency_key: already used for redemption " + r.ID + " with other points, partner or item"}
	}
	switch r.Status {
	case statusFailed:
		return nil, &apiError{status: http.StatusConflict, code: codeRedemptionFailed, param: "idempotency_key",
			message: "idempotency_key: redemption " + r.ID + " failed and holds no points; use a new key"}
	case statusPending:
		done, err := s.completeRedemption(c.ctx, r, !fresh)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				s.m.outcomes.WithLabelValues("pending").Inc()
				return nil, fmt.Errorf("redemption %s: %w: %w", r.ID, errPending, err)
			}
			s.m.outcomes.WithLabelValues("failed").Inc()
			return nil, err
		}
		r = done
	}
	if fresh {
		s.m.outcomes.WithLabelValues("created").Inc()
	} else {
		s.m.outcomes.WithLabelValues("replayed").Inc()
	}
	return &reply{status: http.StatusCreated, body: r.view(), replayed: !fresh}, nil
}

// reserve decides a redemption under the member's lock, in one transaction: the
// reservation already made with the key (fresh false), or a new pending one (fresh
// true), or, when points exceed the available balance, that balance. Open
// reservations are summed before the balance is read: a fold that settles a
// reservation between the two reads is then counted twice (refusing too much, for a
// moment), never missed.
func (s *Server) reserve(ctx context.Context, target string, want reservation) (r *reservation, fresh bool, insufficient *int64, err error) {
	started := time.Now()
	defer func() { s.m.lockWaiting.Observe(time.Since(started).Seconds()) }()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, nil, fmt.Errorf("reserve: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, lockKey(want.Customer)); err != nil {
		return nil, false, nil, fmt.Errorf("reserve: lock member: %w", err)
	}
	r, err = scanReservation(tx.QueryRow(ctx, `SELECT `+reservationColumns+` FROM redeem.reservations
		WHERE customer_id = $1 AND idempotency_key = $2`, want.Customer, want.Key))
	switch {
	case err == nil:
		return r, false, nil, nil // commit nothing: the rollback releases the lock
	case !errNoRows(err):
		return nil, false, nil, fmt.Errorf("reserve: look the key up: %w", err)
	}
	var reserved int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(points), 0)::bigint FROM redeem.reservations
		WHERE customer_id = $1 AND status IN ('pending', 'published')`, want.Customer).Scan(&reserved); err != nil {
		return nil, false, nil, fmt.Errorf("reserve: sum open reservations: %w", err)
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond) // PostgreSQL's precision: the event time survives a reread
	balance, err := s.balance(ctx, tx, target, want.Customer, now)
	if err != nil {
		if isUndefinedTable(err) {
			err = fmt.Errorf("%w: %w", errNoReadModel, err)
		}
		return nil, false, nil, fmt.Errorf("reserve: balance of the member in %s: %w", target, err)
	}
	if available := balance - reserved; want.Points > available {
		available = max(available, 0)
		return nil, false, &available, nil
	}
	id := newReservationID()
	r, err = scanReservation(tx.QueryRow(ctx, `INSERT INTO redeem.reservations
		(id, customer_id, idempotency_key, points, partner, item, status, created_at, event_source, event_id)
		VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $1) RETURNING `+reservationColumns,
		id, want.Customer, want.Key, want.Points, want.Partner, want.Item, now, Source))
	if err != nil {
		return nil, false, nil, fmt.Errorf("reserve: insert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, nil, fmt.Errorf("reserve: commit: %w", err)
	}
	return r, true, nil, nil
}

// newReservationID mints a reservation id, which is also the redemption id and the
// id of its points.redeemed event: "rdm_" and 26 hex digits (random).
func newReservationID() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return "rdm_" + hex.EncodeToString(b[:])
}

var redemptionIDPattern = regexp.MustCompile(`^rdm_[0-9a-f]{26}$`)

// getRedemption answers a redemption and its status.
func (s *Server) getRedemption(c *call) (*reply, error) {
	id := c.r.PathValue("id")
	if !redemptionIDPattern.MatchString(id) {
		return nil, badParam("id", "not a redemption id")
	}
	r, err := getReservation(c.ctx, s.pool, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, param: "id", message: "id: no such redemption"}
	}
	c.customer = r.Customer
	return &reply{body: r.view()}, nil
}

// postReversal reverses a redemption by publishing event.retracted of its
// points.redeemed. Idempotent: a reversal already accepted is answered as it stands
// (its first reason), and published at most once.
func (s *Server) postReversal(c *call) (*reply, error) {
	id := c.r.PathValue("id")
	if !redemptionIDPattern.MatchString(id) {
		return nil, badParam("id", "not a redemption id")
	}
	var req reversalRequest
	if err := s.readJSON(c, &req); err != nil {
		return nil, err
	}
	reason, err := text("reason", req.Reason, maxReason)
	if err != nil {
		return nil, err
	}
	r, fresh, err := s.recordReversal(c.ctx, id, reason)
	if err != nil {
		return nil, err
	}
	c.customer = r.Customer
	if *r.ReversalStatus == statusPending {
		done, err := s.completeReversal(c.ctx, r, !fresh)
		if err != nil {
			return nil, fmt.Errorf("reversal of %s: %w: %w", r.ID, errPending, err)
		}
		r = done
	}
	return &reply{status: http.StatusCreated, body: r.view(), replayed: !fresh}, nil
}

// recordReversal records a reversal on the redemption's row (locked), or returns the
// one already recorded (fresh false).
func (s *Server) recordReversal(ctx context.Context, id, reason string) (*reservation, bool, error) {
	var out *reservation
	fresh := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r, err := scanReservation(tx.QueryRow(ctx, `SELECT `+reservationColumns+` FROM redeem.reservations WHERE id = $1 FOR UPDATE`, id))
		if errNoRows(err) {
			return &apiError{status: http.StatusNotFound, code: codeNotFound, param: "id", message: "id: no such redemption"}
		}
		if err != nil {
			return fmt.Errorf("reversal: read %s: %w", id, err)
		}
		switch {
		case r.ReversalStatus != nil:
			out = r
			return nil
		case r.Status == statusPending:
			return &apiError{status: http.StatusConflict, code: codeRedemptionPending, param: "id", retryAfter: 1,
				message: "id: the redemption is not yet in the log; retry shortly"}
		case r.Status == statusFailed:
			return &apiError{status: http.StatusConflict, code: codeRedemptionFailed, param: "id",
				message: "id: the redemption failed and holds no points: nothing to reverse"}
		}
		at := s.cfg.Now().UTC().Truncate(time.Microsecond)
		out, err = scanReservation(tx.QueryRow(ctx, `UPDATE redeem.reservations
			SET reversal_reason = $2, reversal_status = 'pending', reversal_event_id = id || $3, reversed_at = $4
			WHERE id = $1 RETURNING `+reservationColumns, id, reason, reversalSuffix, at))
		if err != nil {
			return fmt.Errorf("reversal: record %s: %w", id, err)
		}
		fresh = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, fresh, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
