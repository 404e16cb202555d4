package query

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/touchstream/touchstream/projections/loyalty"
)

// LoyaltyMemberResponse is the body of GET /v1/loyalty/members/{id}.
type LoyaltyMemberResponse struct {
	Account   *loyalty.Account `json:"account"`
	Freshness *Freshness       `json:"freshness"`
}

// LoyaltyTotalsResponse is the body of GET /v1/loyalty/totals.
type LoyaltyTotalsResponse struct {
	Totals    *loyalty.Totals `json:"totals"`
	Freshness *Freshness      `json:"freshness"`
}

func (s *Server) loyaltyTarget(c *call) (string, error) {
	if s.cfg.LoyaltyRules == nil {
		return "", &apiError{status: http.StatusNotFound, code: codeNotFound, message: "the loyalty club is not configured on this server"}
	}
	return s.target(c.ctx, loyalty.Name, s.cfg.LoyaltyTarget)
}

// getLoyaltyMember answers a member's account: balance now or as of a moment, tier
// and progress to the next, open lots with their expiry, the newest ledger entries.
func (s *Server) getLoyaltyMember(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	p, err := parseParams(c, "as_of", "entries")
	if err != nil {
		return nil, err
	}
	asOf, err := p.time("as_of")
	if err != nil {
		return nil, err
	}
	entries := 20
	if v, ok := p["entries"]; ok {
		if entries, err = strconv.Atoi(v); err != nil || entries < 0 || entries > maxLimit {
			return nil, badParam("entries", fmt.Sprintf("must be an integer from 0 to %d", maxLimit))
		}
	}
	target, err := s.loyaltyTarget(c)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	acct, err := loyalty.AccountOf(c.ctx, s.db, target, s.cfg.LoyaltyRules, id, asOf, entries)
	if errors.Is(err, loyalty.ErrNotMember) {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, fresh: fresh,
			message: fmt.Sprintf("not a loyalty member as of stream sequence %d of its partition", fresh.Seq)}
	}
	if err != nil {
		return nil, err
	}
	return &reply{body: LoyaltyMemberResponse{Account: acct, Freshness: fresh}, fresh: fresh}, nil
}

// getLoyaltyTotals answers the club's figures: points outstanding, members per tier,
// and points earned, redeemed and expired per month.
func (s *Server) getLoyaltyTotals(c *call) (*reply, error) {
	p, err := parseParams(c, "months")
	if err != nil {
		return nil, err
	}
	months := 12
	if v, ok := p["months"]; ok {
		if months, err = strconv.Atoi(v); err != nil || months < 1 || months > 120 {
			return nil, badParam("months", "must be an integer from 1 to 120")
		}
	}
	target, err := s.loyaltyTarget(c)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	t, err := loyalty.ClubTotals(c.ctx, s.db, target, months)
	if err != nil {
		return nil, err
	}
	return &reply{body: LoyaltyTotalsResponse{Totals: t, Freshness: fresh}, fresh: fresh}, nil
}

// LoyaltyLedgerResponse is the body of GET /v1/loyalty/members/{id}/ledger.
type LoyaltyLedgerResponse struct {
	CustomerID string                `json:"customer_id"`
	Items      []loyalty.LedgerEntry `json:"items"`
	// Next is the value of `before` for the following (older) page; nil on the last.
	Next      *int       `json:"next"`
	Freshness *Freshness `json:"freshness"`
}

// getLoyaltyLedger pages through a member's ledger, newest first: every movement of
// points with the event that caused it and the rule version that produced it.
func (s *Server) getLoyaltyLedger(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	p, err := parseParams(c, "before", "limit")
	if err != nil {
		return nil, err
	}
	before := -1
	if v, ok := p["before"]; ok {
		if before, err = strconv.Atoi(v); err != nil || before < 0 {
			return nil, badParam("before", "must be a non-negative integer: the \"next\" of the previous page")
		}
	}
	limit, err := p.limit()
	if err != nil {
		return nil, err
	}
	target, err := s.loyaltyTarget(c)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	items, next, err := loyalty.Ledger(c.ctx, s.db, target, id, before, limit)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 && before < 0 {
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, fresh: fresh,
			message: fmt.Sprintf("not a loyalty member as of stream sequence %d of its partition", fresh.Seq)}
	}
	body := LoyaltyLedgerResponse{CustomerID: id, Items: items, Freshness: fresh}
	if body.Items == nil {
		body.Items = []loyalty.LedgerEntry{}
	}
	if next >= 0 {
		body.Next = &next
	}
	return &reply{body: body, fresh: fresh}, nil
}
