package churn

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/churn/features"
)

// Alert states. An alert is open when raised, acknowledged when the desk takes it in
// hand, actioned once an offer was presented or accepted on it, and closed with an
// outcome (retained or churned).
const (
	StateOpen         = "open"
	StateAcknowledged = "acknowledged"
	StateActioned     = "actioned"
	StateClosed       = "closed"
)

// Signal types the projection raises: one per alert transition.
const (
	SignalAlertRaised       = "churn.alert_raised"
	SignalAlertAcknowledged = "churn.alert_acknowledged"
	SignalAlertActioned     = "churn.alert_actioned"
	SignalAlertClosed       = "churn.alert_closed"
)

// Policy keeps alerts from flapping.
type Policy struct {
	// Band is the hysteresis: after an alert, the customer's score must fall below
	// the threshold minus Band before another can be raised (default 0.1).
	Band float64
	// CoolDown is the least event time between an alert's close and the next raise
	// (default 30 days).
	CoolDown time.Duration
	// MaxReasons is how many reasons an alert keeps (default 5).
	MaxReasons int
}

func (p *Policy) setDefaults() {
	if p.Band == 0 {
		p.Band = 0.1
	}
	if p.CoolDown == 0 {
		p.CoolDown = 30 * 24 * time.Hour
	}
	if p.MaxReasons == 0 {
		p.MaxReasons = 5
	}
}

// Validate reports a policy that cannot work.
func (p Policy) Validate() error {
	var errs []error
	if p.Band < 0 || p.Band >= 1 {
		errs = append(errs, fmt.Errorf("band: %v not in [0, 1)", p.Band))
	}
	if p.CoolDown < 0 {
		errs = append(errs, fmt.Errorf("cool_down: %v is negative", p.CoolDown))
	}
	if p.MaxReasons < 0 {
		errs = append(errs, fmt.Errorf("max_reasons: %d is negative", p.MaxReasons))
	}
	return errors.Join(errs...)
}

// Action is something the desk did on an alert: an offer presented or accepted.
type Action struct {
	Kind    string          `json:"kind"` // offer_presented, offer_accepted
	OfferID string          `json:"offer_id"`
	Offer   string          `json:"offer_kind,omitempty"`
	StaffID string          `json:"staff_id,omitempty"`
	At      time.Time       `json:"at"`
	Event   events.EventRef `json:"event"`
}

// Alert is a churn alert and its lifecycle. It carries ids, scores and reasons, never
// personal data.
type Alert struct {
	ID       string            `json:"alert_id"`
	Customer string            `json:"customer_id"`
	State    string            `json:"state"`
	Outcome  string            `json:"outcome,omitempty"`
	Score    float64           `json:"score"` // at raise
	Model    string            `json:"model"`
	Reasons  []features.Reason `json:"reasons"`
	ValueFen int64             `json:"value_fen"`
	RaisedAt time.Time         `json:"raised_at"`
	RaisedBy events.EventRef   `json:"raised_by"` // the event whose score crossed the threshold
	// AcknowledgedAt and AcknowledgedBy: the desk took it in hand.
	AcknowledgedAt time.Time `json:"acknowledged_at,omitzero"`
	AcknowledgedBy string    `json:"acknowledged_by,omitempty"`
	Actions        []Action  `json:"actions,omitempty"`
	ClosedAt       time.Time `json:"closed_at,omitzero"`
	ClosedBy       string    `json:"closed_by,omitempty"` // "" when closed by a termination
	UpdatedAt      time.Time `json:"updated_at"`
}

// AlertID is the deterministic id of the alert raised for customer by an event: the
// same replay raises the same id.
func AlertID(customer string, cause events.EventRef) string {
	h := sha256.New()
	for _, s := range []string{customer, cause.Source, cause.ID} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return "churn-" + hex.EncodeToString(h.Sum(nil))[:26]
}

// lifecycle is the part of a customer's record that drives its alerts.
type lifecycle struct {
	Alert      *Alert    `json:"alert,omitempty"`         // the current or last alert
	Disarmed   bool      `json:"disarmed,omitempty"`      // hysteresis: no raise until the score falls below threshold-band
	LastClosed time.Time `json:"last_closed,omitzero"`    // for the cool-down
	Terminated bool      `json:"terminated,omitempty"`    // no alert after a termination
	Raised     int       `json:"alerts_raised,omitempty"` // alerts raised for this customer
}

// transition is a change of an alert, to be stored and (when emitting) signalled.
type transition struct {
	typ   string
	alert *Alert
}

// open reports whether the lifecycle holds an alert that is not closed.
func (l *lifecycle) open() bool { return l.Alert != nil && l.Alert.State != StateClosed }

// scored moves the lifecycle after a new score at event e: it may raise an alert.
func (l *lifecycle) scored(pol Policy, customer string, e events.EventRef, at time.Time, s features.Score, threshold float64, valueFen int64) *transition {
	if s.Probability < threshold-pol.Band {
		l.Disarmed = false
	}
	if l.Terminated || l.open() || l.Disarmed || s.Probability < threshold {
		return nil
	}
	if !l.LastClosed.IsZero() && at.Before(l.LastClosed.Add(pol.CoolDown)) {
		return nil
	}
	reasons := s.Reasons
	if len(reasons) > pol.MaxReasons {
		reasons = reasons[:pol.MaxReasons]
	}
	l.Alert = &Alert{
		ID: AlertID(customer, e), Customer: customer, State: StateOpen, Score: s.Probability, Model: s.Version,
		Reasons: reasons, ValueFen: valueFen, RaisedAt: at, RaisedBy: e, UpdatedAt: at,
	}
	l.Disarmed = true
	l.Raised++
	return &transition{typ: SignalAlertRaised, alert: l.Alert}
}

// desk applies an action of the retention desk (acknowledge, offer, close) naming an
// alert. Actions on another alert than the customer's current one, or on a closed
// alert, change nothing (the command service refuses them; a replay stays quiet).
func (l *lifecycle) desk(alertID string, at time.Time, ref events.EventRef, data any) *transition {
	a := l.Alert
	if a == nil || alertID == "" || a.ID != alertID || a.State == StateClosed {
		return nil
	}
	switch d := data.(type) {
	case *events.AlertAcknowledged:
		if !a.AcknowledgedAt.IsZero() {
			return nil
		}
		a.AcknowledgedAt, a.AcknowledgedBy = at, d.StaffID
		if a.State == StateOpen {
			a.State = StateAcknowledged
		}
		a.UpdatedAt = at
		return &transition{typ: SignalAlertAcknowledged, alert: a}
	case *events.OfferPresented:
		a.Actions = append(a.Actions, Action{Kind: "offer_presented", OfferID: d.OfferID, Offer: d.Kind, StaffID: d.StaffID, At: at, Event: ref})
		a.State, a.UpdatedAt = StateActioned, at
		return &transition{typ: SignalAlertActioned, alert: a}
	case *events.OfferAccepted:
		a.Actions = append(a.Actions, Action{Kind: "offer_accepted", OfferID: d.OfferID, At: at, Event: ref})
		a.State, a.UpdatedAt = StateActioned, at
		return &transition{typ: SignalAlertActioned, alert: a}
	case *events.AlertClosed:
		l.close(at, d.Outcome, d.StaffID)
		return &transition{typ: SignalAlertClosed, alert: a}
	}
	return nil
}

// terminated closes an open alert as churned and stops alerting.
func (l *lifecycle) terminated(at time.Time) *transition {
	l.Terminated = true
	if !l.open() {
		return nil
	}
	l.close(at, events.OutcomeChurned, "")
	return &transition{typ: SignalAlertClosed, alert: l.Alert}
}

func (l *lifecycle) close(at time.Time, outcome, by string) {
	l.Alert.State, l.Alert.Outcome, l.Alert.ClosedAt, l.Alert.ClosedBy, l.Alert.UpdatedAt = StateClosed, outcome, at, by, at
	l.LastClosed = at
}

// StateGroup is the customer's state group, joined at query time: churned once
// terminated, warning while an alert is not closed, stable otherwise.
func StateGroup(terminated bool, alertOpen bool) string {
	switch {
	case terminated:
		return "churned"
	case alertOpen:
		return "warning"
	}
	return "stable"
}
