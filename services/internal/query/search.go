package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
)

// CustomerSummary is a profile as a search lists it, with the name and phone number
// to confirm who it is (masked or clear by access; null when absent or erased).
type CustomerSummary struct {
	customer360.Summary
	Name   *string `json:"name"`
	Phone  *string `json:"phone"`
	Erased bool    `json:"erased"`
}

// SearchResponse is the body of GET /v1/customers.
type SearchResponse struct {
	Items []CustomerSummary `json:"items"`
	// Next is the cursor of the following page; nil on the last page.
	Next      *string    `json:"next"`
	Access    Access     `json:"access"`
	Freshness *Freshness `json:"freshness"`
}

// The search filters, in the order error messages list them.
var searchFilters = []string{"phone", "id", "tier", "lifecycle", "region", "segment"}

var lifecycles = []string{customer360.StageNew, customer360.StageActive, customer360.StagePortingOut, customer360.StageTerminated}

func (s *Server) searchCustomers(c *call) (*reply, error) {
	p, err := parseParams(c, append(slices.Clone(searchFilters), "cursor", "limit")...)
	if err != nil {
		return nil, err
	}
	f, err := s.filter(p)
	if err != nil {
		return nil, err
	}
	// An exact id lives in one partition: its freshness is that partition's. Any other
	// filter may match customers of every partition.
	target, err := s.customer360Target(c.ctx)
	if err != nil {
		return nil, err
	}
	var fresh *Freshness
	if f.CustomerID != "" && !strings.HasSuffix(f.CustomerID, "*") {
		fresh, err = s.customerFreshness(c.ctx, target, f.CustomerID)
	} else {
		fresh, err = s.summaryFreshness(c.ctx, target)
	}
	if err != nil {
		return nil, err
	}
	sums, next, err := customer360.Search(c.ctx, s.db, target, f)
	if errors.Is(err, customer360.ErrBadCursor) {
		return nil, badParam("cursor", "malformed cursor: pass the \"next\" value of the previous page unchanged")
	}
	if err != nil {
		return nil, err
	}
	acc := accessOf(c.viewer)
	pers, err := s.summaryPersonal(c.ctx, acc, sums)
	if err != nil {
		return nil, err
	}
	body := SearchResponse{Items: make([]CustomerSummary, len(sums)), Access: acc, Freshness: fresh}
	read := make([]audited, len(sums))
	for i, sum := range sums {
		body.Items[i] = CustomerSummary{Summary: sum, Name: pers[i].name, Phone: pers[i].phone, Erased: pers[i].erased}
		read[i] = audited{sum.CustomerID, pers[i]}
	}
	if err := s.recordReads(c, "search", read); err != nil {
		return nil, err
	}
	if next != "" {
		body.Next = &next
	}
	return &reply{body: body, fresh: fresh}, nil
}

// filter reads and checks the search parameters. At least one filter is required: the
// API does not enumerate the whole customer base.
func (s *Server) filter(p params) (customer360.Filter, error) {
	var f customer360.Filter
	var err error
	if raw, ok := p["phone"]; ok {
		// The number is never echoed nor logged; only its keyed hash is looked up.
		n := customer360.NormalizePhone(raw)
		if err := validPhone(raw, n); err != nil {
			return f, badParam("phone", err.Error())
		}
		f.PhoneHash = customer360.PhoneHash(s.cfg.PhoneKey, n)
	}
	if v, ok := p["id"]; ok {
		id, prefix := strings.CutSuffix(v, "*")
		if !events.ValidCustomerID(id) {
			return f, badParam("id", "a customer id (1 to 64 characters of A-Z, a-z, 0-9, _ and -), or the start of one followed by *")
		}
		if prefix {
			id += "*"
		}
		f.CustomerID = id
	}
	if v, ok := p["tier"]; ok {
		switch {
		case s.tiers != nil && !s.tiers[v]:
			return f, badParam("tier", "unknown tier; the tiers are "+strings.Join(s.cfg.Tiers, ", "))
		case !token.MatchString(v):
			return f, badParam("tier", "a tier name is 1 to 64 characters of A-Z, a-z, 0-9, _ . : -")
		}
		f.Tier = v
	}
	if v, ok := p["lifecycle"]; ok {
		if !slices.Contains(lifecycles, v) {
			return f, badParam("lifecycle", "must be one of "+strings.Join(lifecycles, ", "))
		}
		f.Lifecycle = v
	}
	if v, ok := p["region"]; ok {
		if !token.MatchString(v) {
			return f, badParam("region", "a region is 1 to 64 characters of A-Z, a-z, 0-9, _ . : -")
		}
		f.Region = v
	}
	if v, ok := p["segment"]; ok {
		if !token.MatchString(v) {
			return f, badParam("segment", "a segment is 1 to 64 characters of A-Z, a-z, 0-9, _ . : -")
		}
		f.Segment = v
	}
	if f.PhoneHash == nil && f.CustomerID == "" && f.Tier == "" && f.Lifecycle == "" && f.Region == "" && f.Segment == "" {
		return f, &apiError{status: http.StatusBadRequest, code: codeMissingFilter,
			message: fmt.Sprintf("give at least one filter: %s", strings.Join(searchFilters, ", "))}
	}
	if f.Cursor, err = p.cursor(); err != nil {
		return f, err
	}
	if f.Limit, err = p.limit(); err != nil {
		return f, err
	}
	return f, nil
}

// summaryPersonal opens the name and phone of every customer of a page with one key
// lookup.
func (s *Server) summaryPersonal(ctx context.Context, access Access, sums []customer360.Summary) ([]personal, error) {
	items := make([]sealedFields, len(sums))
	for i, sum := range sums {
		items[i] = sealedFields{customer: sum.CustomerID, name: sum.Name, phone: sum.Phone}
	}
	return openAll(ctx, s.keys, access, items)
}
