package query

import (
	"errors"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
)

// AuditResponse is the body of GET /v1/audit/access.
type AuditResponse struct {
	Items []audit.Entry `json:"items"`
	// Next is the cursor of the following (older) page; nil on the last page.
	Next *string `json:"next"`
}

// getAuditAccess pages through the access audit log, newest first.
func (s *Server) getAuditAccess(c *call) (*reply, error) {
	p, err := parseParams(c, "customer", "staff", "from", "to", "cursor", "limit")
	if err != nil {
		return nil, err
	}
	var f audit.Filter
	if v, ok := p["customer"]; ok {
		if !events.ValidCustomerID(v) {
			return nil, badParam("customer", "a customer id: 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
		}
		f.Customer = v
	}
	if v, ok := p["staff"]; ok {
		if !access.ValidStaffID(v) {
			return nil, badParam("staff", "a staff id: 1 to 64 characters of A-Z, a-z, 0-9, _, ., : and -")
		}
		f.Staff = v
	}
	if f.From, err = p.time("from"); err != nil {
		return nil, err
	}
	if f.To, err = p.time("to"); err != nil {
		return nil, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return nil, badParam("to", "must be after from (the range is [from, to))")
	}
	if f.Cursor, err = p.cursor(); err != nil {
		return nil, err
	}
	if f.Limit, err = p.limit(); err != nil {
		return nil, err
	}
	items, next, err := audit.List(c.ctx, s.db, f)
	if errors.Is(err, audit.ErrBadCursor) {
		return nil, badParam("cursor", "malformed cursor: pass the \"next\" value of the previous page unchanged")
	}
	if err != nil {
		return nil, readModelMissing(err, audit.Schema, nil)
	}
	body := AuditResponse{Items: items, Next: nil}
	if body.Items == nil {
		body.Items = []audit.Entry{}
	}
	if next != "" {
		body.Next = &next
	}
	return &reply{status: 200, body: body}, nil
}
