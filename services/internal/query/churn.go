package query

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/churn"
)

// ChurnScoresResponse is the body of GET /v1/churn/scores.
type ChurnScoresResponse struct {
	Items []churn.ScoreRow `json:"items"`
	// NextCursor is the cursor of the following page; nil on the last.
	NextCursor *string    `json:"next_cursor"`
	Freshness  *Freshness `json:"freshness"`
}

// ChurnCustomerResponse is the body of GET /v1/churn/customers/{id}.
type ChurnCustomerResponse struct {
	Churn     *churn.Detail `json:"churn"`
	Freshness *Freshness    `json:"freshness"`
}

// ChurnAlertsResponse is the body of GET /v1/churn/alerts: the desk's queue.
type ChurnAlertsResponse struct {
	Items      []churn.QueueRow `json:"items"`
	NextCursor *string          `json:"next_cursor"`
	Freshness  *Freshness       `json:"freshness"`
}

// ChurnAlertResponse is the body of GET /v1/churn/alerts/{id}.
type ChurnAlertResponse struct {
	Alert     *churn.Alert `json:"alert"`
	Freshness *Freshness   `json:"freshness"`
}

// scoreCursor is the position after a page of the score list: its last row's score
// and customer.
type scoreCursor struct {
	Score    float64 `json:"s"`
	Customer string  `json:"c"`
}

// queueCursor is the position after a page of the queue: its last alert's priority
// and id.
type queueCursor struct {
	Priority float64 `json:"p"`
	Alert    string  `json:"a"`
}

func encodeCursor(v any) *string {
	b, _ := json.Marshal(v) // plain numbers and strings
	s := base64.RawURLEncoding.EncodeToString(b)
	return &s
}

func decodeCursor(raw string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || json.Unmarshal(b, v) != nil {
		return badParam("cursor", "malformed cursor: pass the \"next_cursor\" value of the previous page unchanged")
	}
	return nil
}

// fraction reads a parameter in [0, 1]; ok is false when absent.
func (p params) fraction(name string) (v float64, ok bool, err error) {
	raw, ok := p[name]
	if !ok {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
		return 0, false, badParam(name, "must be a number from 0 to 1")
	}
	return v, true, nil
}

// bool reads a true/false parameter.
func (p params) bool(name string) (bool, error) {
	raw, ok := p[name]
	if !ok {
		return false, nil
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		return false, badParam(name, "must be true or false")
	}
	return v, nil
}

// readModelMissing maps a read model's missing table (the version was never built on
// this database) to a 404, so a server without the projection answers plainly.
func readModelMissing(err error, target string, fresh *Freshness) error {
	if notMigrated(err) {
		return &apiError{status: http.StatusNotFound, code: codeNotFound, fresh: fresh,
			message: fmt.Sprintf("the read model %s does not exist on this server", target)}
	}
	return err
}

// getChurnScores lists customers by churn score, highest first, with filters.
func (s *Server) getChurnScores(c *call) (*reply, error) {
	p, err := parseParams(c, "tier", "region", "min_score", "max_score", "include_churned", "limit", "cursor")
	if err != nil {
		return nil, err
	}
	var f churn.ScoreFilter
	if f.Tier = p["tier"]; f.Tier != "" {
		if !token.MatchString(f.Tier) {
			return nil, badParam("tier", "must match "+token.String())
		}
		if s.tiers != nil && !s.tiers[f.Tier] {
			return nil, badParam("tier", "unknown value tier")
		}
	}
	if f.Region = p["region"]; f.Region != "" && !token.MatchString(f.Region) {
		return nil, badParam("region", "must match "+token.String())
	}
	minScore, _, err := p.fraction("min_score")
	if err != nil {
		return nil, err
	}
	maxScore, hasMax, err := p.fraction("max_score")
	if err != nil {
		return nil, err
	}
	if hasMax && maxScore < minScore {
		return nil, badParam("max_score", "must not be below min_score")
	}
	if hasMax && maxScore == 0 {
		// The read model takes 0 as "no upper bound": the smallest positive bound
		// keeps exactly the scores of 0.
		maxScore = math.SmallestNonzeroFloat64
	}
	f.MinScore, f.MaxScore = minScore, maxScore
	if f.IncludeChurned, err = p.bool("include_churned"); err != nil {
		return nil, err
	}
	if f.Limit, err = p.limit(); err != nil {
		return nil, err
	}
	raw, err := p.cursor()
	if err != nil {
		return nil, err
	}
	if raw != "" {
		var cur scoreCursor
		if err := decodeCursor(raw, &cur); err != nil {
			return nil, err
		}
		f.After = &churn.ScoreRow{Score: cur.Score, Customer: cur.Customer}
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	rows, err := churn.Scores(c.ctx, s.db, target, f)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	body := ChurnScoresResponse{Items: rows, Freshness: fresh}
	if len(rows) == f.Limit {
		last := rows[len(rows)-1]
		body.NextCursor = encodeCursor(scoreCursor{Score: last.Score, Customer: last.Customer})
	}
	return &reply{body: body, fresh: fresh}, nil
}

// getChurnCustomer answers one customer's churn view.
func (s *Server) getChurnCustomer(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	d, err := churn.Customer(c.ctx, s.db, target, id)
	if errors.Is(err, churn.ErrNotFound) {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, fresh: fresh,
			message: fmt.Sprintf("no churn record for this customer as of stream sequence %d of its partition", fresh.Seq)}
	}
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	return &reply{body: ChurnCustomerResponse{Churn: d, Freshness: fresh}, fresh: fresh}, nil
}

// getChurnAlerts pages through the desk's queue: alerts not closed, highest priority
// (score × monthly value) first.
func (s *Server) getChurnAlerts(c *call) (*reply, error) {
	p, err := parseParams(c, "limit", "cursor")
	if err != nil {
		return nil, err
	}
	limit, err := p.limit()
	if err != nil {
		return nil, err
	}
	raw, err := p.cursor()
	if err != nil {
		return nil, err
	}
	var after *churn.QueueRow
	if raw != "" {
		var cur queueCursor
		if err := decodeCursor(raw, &cur); err != nil {
			return nil, err
		}
		after = &churn.QueueRow{Alert: churn.Alert{ID: cur.Alert}, Priority: cur.Priority}
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	rows, err := churn.Queue(c.ctx, s.db, target, limit, after)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	body := ChurnAlertsResponse{Items: rows, Freshness: fresh}
	if len(rows) == limit {
		last := rows[len(rows)-1]
		body.NextCursor = encodeCursor(queueCursor{Priority: last.Priority, Alert: last.ID})
	}
	return &reply{body: body, fresh: fresh}, nil
}

// pathAlert reads and checks the {id} path segment of an alert.
func pathAlert(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !token.MatchString(id) {
		return "", badParam("id", "an alert id is 1 to 64 characters of A-Z, a-z, 0-9, _, ., : and -")
	}
	return id, nil
}

// getChurnAlert answers one alert, with the freshness of its customer's partition.
func (s *Server) getChurnAlert(c *call) (*reply, error) {
	id, err := pathAlert(c)
	if err != nil {
		return nil, err
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.alert(c, target, id)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, a.Customer)
	if err != nil {
		return nil, err
	}
	return &reply{body: ChurnAlertResponse{Alert: a, Freshness: fresh}, fresh: fresh}, nil
}

// alert reads an alert; unknown is a 404.
func (s *Server) alert(c *call, target, id string) (*churn.Alert, error) {
	a, err := churn.GetAlert(c.ctx, s.db, target, id)
	if errors.Is(err, churn.ErrNotFound) {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "no such churn alert"}
	}
	if err != nil {
		return nil, readModelMissing(err, target, nil)
	}
	c.customer = a.Customer
	return a, nil
}

// Bounds of a command.
const (
	maxCommandBody = 4 << 10 // bytes
	maxNote        = 256     // characters, as the event schemas allow
)

// saneKey is an event id or source: printable ASCII without spaces, at most 256 bytes.
var saneKey = regexp.MustCompile(`^[!-~]{1,256}$`)

// Offer kinds an offer.presented may name.
var offerKinds = []string{"discount", "data_bonus", "device", "plan_upgrade", "points", "retention_bundle"}

// CommandResponse is the body of a command's 202: the event that carries it into the
// log. The read model shows its effect once the projector has folded it.
type CommandResponse struct {
	Event   events.EventRef `json:"event"`
	Type    string          `json:"type"`
	AlertID string          `json:"alert_id"`
	// Duplicate: an event with the same source and id (the same Idempotency-Key) was
	// already stored; this one was not stored again.
	Duplicate bool `json:"duplicate"`
}

// AcknowledgeRequest is the body of POST /v1/churn/alerts/{id}/acknowledge.
type AcknowledgeRequest struct {
	StaffID string `json:"staff_id"`
	Note    string `json:"note"`
}

// ActionRequest is the body of POST /v1/churn/alerts/{id}/actions.
type ActionRequest struct {
	Kind      string `json:"kind"` // offer_presented, offer_accepted
	OfferID   string `json:"offer_id"`
	OfferKind string `json:"offer_kind"` // required for offer_presented
	StaffID   string `json:"staff_id"`   // optional, the token's (actingStaff); offer.accepted carries none
}

// CloseRequest is the body of POST /v1/churn/alerts/{id}/close.
type CloseRequest struct {
	Outcome string `json:"outcome"` // retained, churned
	StaffID string `json:"staff_id"`
	Note    string `json:"note"`
}

// acknowledgeAlert: the desk takes an alert in hand (alert.acknowledged).
func (s *Server) acknowledgeAlert(c *call) (*reply, error) {
	var req AcknowledgeRequest
	return s.command(c, &req, func() (events.Payload, error) {
		staff, err := actingStaff(c, req.StaffID)
		if err != nil {
			return nil, err
		}
		if err := checkNote(req.Note); err != nil {
			return nil, err
		}
		return events.AlertAcknowledged{AlertID: c.r.PathValue("id"), StaffID: staff, Note: req.Note}, nil
	})
}

// actOnAlert: the desk presented an offer on an alert, or the customer accepted one
// (offer.presented, offer.accepted naming the alert).
func (s *Server) actOnAlert(c *call) (*reply, error) {
	var req ActionRequest
	return s.command(c, &req, func() (events.Payload, error) {
		if err := checkRef("offer_id", req.OfferID, true); err != nil {
			return nil, err
		}
		id := c.r.PathValue("id")
		switch req.Kind {
		case "offer_presented":
			if req.OfferKind == "" {
				return nil, badParam("offer_kind", "required for offer_presented: one of "+strings.Join(offerKinds, ", "))
			}
			if !slices.Contains(offerKinds, req.OfferKind) {
				return nil, badParam("offer_kind", "must be one of "+strings.Join(offerKinds, ", "))
			}
			staff, err := actingStaff(c, req.StaffID)
			if err != nil {
				return nil, err
			}
			return events.OfferPresented{OfferID: req.OfferID, Kind: req.OfferKind, AlertID: id, StaffID: staff}, nil
		case "offer_accepted":
			if req.OfferKind != "" && !slices.Contains(offerKinds, req.OfferKind) {
				return nil, badParam("offer_kind", "must be one of "+strings.Join(offerKinds, ", "))
			}
			if err := checkRef("staff_id", req.StaffID, false); err != nil {
				return nil, err
			}
			return events.OfferAccepted{OfferID: req.OfferID, AlertID: id}, nil
		case "":
			return nil, badParam("kind", "required: offer_presented or offer_accepted")
		}
		return nil, badParam("kind", "must be offer_presented or offer_accepted")
	})
}

// closeAlert: the desk closes an alert with its outcome (alert.closed).
func (s *Server) closeAlert(c *call) (*reply, error) {
	var req CloseRequest
	return s.command(c, &req, func() (events.Payload, error) {
		switch req.Outcome {
		case events.OutcomeRetained, events.OutcomeChurned:
		case "":
			return nil, badParam("outcome", "required: retained or churned")
		default:
			return nil, badParam("outcome", "must be retained or churned")
		}
		staff, err := actingStaff(c, req.StaffID)
		if err != nil {
			return nil, err
		}
		if err := checkNote(req.Note); err != nil {
			return nil, err
		}
		return events.AlertClosed{AlertID: c.r.PathValue("id"), Outcome: req.Outcome, StaffID: staff, Note: req.Note}, nil
	})
}

// actingStaff is the staff id a command records: the caller's own, from the token.
// A staff_id in the body may only repeat it: nobody acts in another's name.
func actingStaff(c *call, given string) (string, error) {
	if err := checkRef("staff_id", given, false); err != nil {
		return "", err
	}
	if given != "" && given != c.viewer.StaffID {
		return "", &apiError{status: http.StatusForbidden, code: codeForbidden, param: "staff_id",
			message: fmt.Sprintf("staff_id must be your own (%s) or absent: the token says who acts", c.viewer.StaffID)}
	}
	return c.viewer.StaffID, nil
}

func checkRef(name, v string, required bool) error {
	switch {
	case v == "" && required:
		return badParam(name, "required")
	case v != "" && !token.MatchString(v):
		return badParam(name, "1 to 64 characters of A-Z, a-z, 0-9, _, ., : and -")
	}
	return nil
}

func checkNote(v string) error {
	if utf8.RuneCountInString(v) > maxNote {
		return badParam("note", fmt.Sprintf("at most %d characters", maxNote))
	}
	return nil
}

// command runs one of the desk's commands: it reads the body strictly into req,
// builds the event (build checks the fields), checks the alert exists and is not
// closed, and publishes the event with the alert's customer as subject. The event id
// is the Idempotency-Key when given, so a retried command is stored once.
func (s *Server) command(c *call, req any, build func() (events.Payload, error)) (*reply, error) {
	if s.commands == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "commands are not configured on this server"}
	}
	alertID, err := pathAlert(c)
	if err != nil {
		return nil, err
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	key := c.r.Header.Get("Idempotency-Key")
	if key != "" && !saneKey.MatchString(key) {
		return nil, badParam("Idempotency-Key", "1 to 256 printable characters without spaces")
	}
	if err := readBody(c, req); err != nil {
		return nil, err
	}
	payload, err := build()
	if err != nil {
		return nil, err
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.alert(c, target, alertID)
	if err != nil {
		return nil, err
	}
	if a.State == churn.StateClosed {
		return nil, &apiError{status: http.StatusConflict, code: codeConflict,
			message: fmt.Sprintf("the alert is closed (%s); nothing more can be done on it", a.Outcome)}
	}
	e, err := events.NewEvent(a.Customer, time.Now(), payload)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", payload.EventType(), err)
	}
	e.Source = s.cfg.CommandSource
	if key != "" {
		e.ID = key
	}
	res, err := s.commands.Publish(c.ctx, e)
	if err != nil {
		return nil, publishError(err, e.Type)
	}
	if res.Duplicate {
		s.log.Info("command already stored", "request_id", c.reqID, "event_id", e.ID, "event_type", e.Type, "customer_id", a.Customer)
	}
	return &reply{status: http.StatusAccepted, body: CommandResponse{
		Event: events.EventRef{Source: e.Source, ID: e.ID}, Type: e.Type, AlertID: alertID, Duplicate: res.Duplicate,
	}}, nil
}

// readBody decodes a JSON command body strictly: one object, known fields only, at
// most maxCommandBody bytes. Errors name the field at fault, or "body".
func readBody(c *call, v any) error {
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return badParam("Content-Type", "must be application/json")
		}
	}
	raw, err := io.ReadAll(io.LimitReader(c.r.Body, maxCommandBody+1))
	if err != nil {
		return badParam("body", "could not be read whole")
	}
	if len(raw) > maxCommandBody {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: codeTooLarge, param: "body",
			message: fmt.Sprintf("the body is larger than %d bytes", maxCommandBody)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data")
		}
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return badParam(te.Field, "must be a "+te.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return badParam(cmp.Or(name, "body"), "unknown field")
	case errors.Is(err, io.EOF):
		return badParam("body", "required: a JSON object")
	}
	return badParam("body", "must be one JSON object")
}

// errLogUnavailable: the log did not take (or confirm) a command's event in time;
// answered 503 with Retry-After (a retry with the same Idempotency-Key is safe).
var errLogUnavailable = errors.New("the log did not take the event")

// publishError maps a publisher's refusal: a field the contract refuses is a 400
// naming the body field, a log that cannot take the event now a 503.
func publishError(err error, typ string) error {
	var fe events.FieldErrors
	switch {
	case errors.As(err, &fe) && len(fe) > 0:
		field := fe[0].Field
		if name, ok := strings.CutPrefix(field, "/data/"); ok {
			field, _, _ = strings.Cut(name, "/")
			if field == "kind" {
				field = "offer_kind"
			}
		} else if field == "/id" {
			field = "Idempotency-Key"
		}
		return badParam(field, fe[0].Reason)
	case errors.Is(err, events.ErrKeyUnavailable), errors.Is(err, events.ErrAckUnknown), errors.Is(err, events.ErrStreamRefused):
		return fmt.Errorf("publish %s: %w: %w", typ, errLogUnavailable, err)
	}
	return fmt.Errorf("publish %s: %w", typ, err)
}
