package query

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
)

// Access is how much of a customer's personal data a viewer may see.
type Access string

const (
	// AccessMasked shows personal fields masked (138****8000). The default.
	AccessMasked Access = "masked"
	// AccessFull shows personal fields in clear (the role matrix's personal_clear).
	AccessFull Access = "full"
)

// accessOf is the access the role matrix grants a principal.
func accessOf(p access.Principal) Access {
	if p.May(access.PersonalClear) {
		return AccessFull
	}
	return AccessMasked
}

// ViewerFunc decides who a request comes from, from its bearer token
// (access.Gate.Principal). An error matching ErrUnauthenticated answers 401; any other
// error is a logged 500. What the principal may do is the role matrix's
// (access.Needs), consulted by every route.
type ViewerFunc func(r *http.Request) (access.Principal, error)

// ErrUnauthenticated: the request does not say who it comes from, or says it wrongly.
var ErrUnauthenticated = access.ErrUnauthenticated

// AuditLog records the reads of customers' personal data (an audit.Log); a read whose
// records it cannot write is not answered.
type AuditLog interface {
	Record(ctx context.Context, recs ...audit.Record) error
}

// errAuditUnavailable: the access audit log could not record a read; the read is
// refused (503, Retry-After).
var errAuditUnavailable = errors.New("the access audit log could not record the read")

// audited are the personal fields of one customer a read returned.
type audited struct {
	customer string
	p        personal
}

// recordReads writes the access records of a read (one per customer with at least
// one personal field returned) before it is answered.
func (s *Server) recordReads(c *call, route string, items []audited) error {
	clear := accessOf(c.viewer) == AccessFull
	roles := make([]string, len(c.viewer.Roles))
	for i, r := range c.viewer.Roles {
		roles[i] = string(r)
	}
	now := time.Now()
	var recs []audit.Record
	for _, it := range items {
		var fields []string
		for _, f := range []struct {
			name string
			v    *string
		}{{audit.FieldName, it.p.name}, {audit.FieldPhone, it.p.phone}, {audit.FieldIDNumber, it.p.idNumber}, {audit.FieldAddress, it.p.address}} {
			if f.v != nil {
				fields = append(fields, f.name)
			}
		}
		if len(fields) == 0 {
			continue
		}
		recs = append(recs, audit.Record{At: now, StaffID: c.viewer.StaffID, Roles: roles, Customer: it.customer, Fields: fields,
			Clear: clear, Route: route, RequestID: c.reqID})
	}
	if err := s.audit.Record(c.ctx, recs...); err != nil {
		return errors.Join(errAuditUnavailable, err)
	}
	return nil
}

// SessionResponse is the body of GET /v1/session: who the token says the caller is,
// and what the role matrix lets them do (the console hides the rest).
type SessionResponse struct {
	StaffID string        `json:"staff_id"`
	Roles   []access.Role `json:"roles"`
	Access  Access        `json:"access"`
	// Allowed are the routes and capabilities of the role matrix the caller may use.
	Allowed []string `json:"allowed"`
	// ExpiresAt is when the token expires; absent for a static token.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (s *Server) getSession(c *call) (*reply, error) {
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	p := c.viewer
	body := SessionResponse{StaffID: p.StaffID, Roles: p.Roles, Access: accessOf(p), Allowed: p.Allowed()}
	if body.Roles == nil {
		body.Roles = []access.Role{}
	}
	if body.Allowed == nil {
		body.Allowed = []string{}
	}
	if !p.Expires.IsZero() {
		e := p.Expires.UTC()
		body.ExpiresAt = &e
	}
	return &reply{status: http.StatusOK, body: body}, nil
}

// StreamTicketResponse is the body of POST /v1/stream/tickets.
type StreamTicketResponse struct {
	// Ticket opens a live stream (/v1/stream/...?ticket=) until ExpiresAt; it opens no
	// API route.
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) issueStreamTicket(c *call) (*reply, error) {
	if s.tickets == nil {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, message: "stream tickets are not configured on this server"}
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	t, exp := s.tickets.Issue(c.viewer)
	return &reply{status: http.StatusCreated, body: StreamTicketResponse{Ticket: t, ExpiresAt: exp.UTC()}}, nil
}
