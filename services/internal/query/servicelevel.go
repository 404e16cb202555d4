package query

import (
	"time"

	"github.com/touchstream/touchstream/projections/servicelevel"
)

// Bounds of a service-level period.
const (
	defaultPeriod   = 24 * time.Hour
	maxPeriod       = 31 * 24 * time.Hour
	defaultBreaches = 100
)

// AnswerRateResponse is the body of GET /v1/service-level/answer-rate: the hourly
// series of a queue (or of every queue) and the period's total.
type AnswerRateResponse struct {
	Queue string    `json:"queue"` // "": every queue
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Hours are the hours starting in [from, to) that had calls, oldest first.
	Hours []servicelevel.HourRate `json:"hours"`
	// Total sums the hours: answer_rate is every call answered within 20 s over every
	// inbound call offered in the period.
	Total     PeriodRate `json:"total"`
	Freshness *Freshness `json:"freshness"`
}

// PeriodRate is the inbound traffic of a period.
type PeriodRate struct {
	Offered     int64   `json:"offered"`
	Answered    int64   `json:"answered"`
	Within20    int64   `json:"answered_within_20s"`
	Abandoned   int64   `json:"abandoned"`
	Outbound    int64   `json:"outbound"`
	AnswerRate  float64 `json:"answer_rate"`
	Target      float64 `json:"target"`
	MeetsTarget bool    `json:"meets_target"`
}

// BreachesResponse is the body of GET /v1/service-level/breaches.
type BreachesResponse struct {
	From      time.Time                `json:"from"`
	To        time.Time                `json:"to"`
	Items     []servicelevel.Complaint `json:"items"`
	Freshness *Freshness               `json:"freshness"`
}

// ServiceLevelSummaryResponse is the body of GET /v1/service-level/summary.
type ServiceLevelSummaryResponse struct {
	Summary   *servicelevel.Summary `json:"summary"`
	Freshness *Freshness            `json:"freshness"`
}

// ComplaintsResponse is the body of GET /v1/customers/{id}/complaints.
type ComplaintsResponse struct {
	CustomerID string                   `json:"customer_id"`
	Items      []servicelevel.Complaint `json:"items"`
	Freshness  *Freshness               `json:"freshness"`
}

// period reads "from" and "to": default the 24 hours before now, at most 31 days,
// from before to.
func (p params) period() (from, to time.Time, err error) {
	if from, err = p.time("from"); err != nil {
		return
	}
	if to, err = p.time("to"); err != nil {
		return
	}
	switch {
	case to.IsZero() && from.IsZero():
		to = time.Now()
		from = to.Add(-defaultPeriod)
	case to.IsZero():
		to = from.Add(defaultPeriod)
	case from.IsZero():
		from = to.Add(-defaultPeriod)
	}
	if !from.Before(to) {
		return from, to, badParam("to", "must be after from")
	}
	if to.Sub(from) > maxPeriod {
		return from, to, badParam("to", "the period is at most 31 days")
	}
	return from.UTC(), to.UTC(), nil
}

// getAnswerRate answers the hourly answer rate of a queue or of every queue.
func (s *Server) getAnswerRate(c *call) (*reply, error) {
	p, err := parseParams(c, "queue", "from", "to")
	if err != nil {
		return nil, err
	}
	queue := p["queue"]
	if queue != "" && !token.MatchString(queue) {
		return nil, badParam("queue", "must match "+token.String())
	}
	from, to, err := p.period()
	if err != nil {
		return nil, err
	}
	target, err := s.serviceLevelTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	hours, err := servicelevel.AnswerRate(c.ctx, s.db, target, queue, from, to)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	body := AnswerRateResponse{Queue: queue, From: from, To: to, Hours: hours, Freshness: fresh,
		Total: PeriodRate{Target: servicelevel.AnswerTarget}}
	if body.Hours == nil {
		body.Hours = []servicelevel.HourRate{}
	}
	t := &body.Total
	for _, h := range hours {
		t.Offered += h.Offered
		t.Answered += h.Answered
		t.Within20 += h.Within20
		t.Abandoned += h.Abandoned
		t.Outbound += h.Outbound
	}
	if t.Offered > 0 {
		t.AnswerRate = float64(t.Within20) / float64(t.Offered)
		t.MeetsTarget = t.AnswerRate >= t.Target
	}
	return &reply{body: body, fresh: fresh}, nil
}

// getBreaches lists the complaints breached in a period, oldest breach first.
func (s *Server) getBreaches(c *call) (*reply, error) {
	p, err := parseParams(c, "from", "to", "limit")
	if err != nil {
		return nil, err
	}
	from, to, err := p.period()
	if err != nil {
		return nil, err
	}
	limit := defaultBreaches
	if _, ok := p["limit"]; ok {
		if limit, err = p.limit(); err != nil {
			return nil, err
		}
	}
	target, err := s.serviceLevelTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	items, err := servicelevel.Breaches(c.ctx, s.db, target, from, to, limit)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	if items == nil {
		items = []servicelevel.Complaint{}
	}
	return &reply{body: BreachesResponse{From: from, To: to, Items: items, Freshness: fresh}, fresh: fresh}, nil
}

// getServiceLevelSummary answers the service level at a glance, as of "at" (default
// now, in the operator's zone; the day is at's calendar day in at's offset).
func (s *Server) getServiceLevelSummary(c *call) (*reply, error) {
	p, err := parseParams(c, "at")
	if err != nil {
		return nil, err
	}
	at, err := p.time("at")
	if err != nil {
		return nil, err
	}
	if at.IsZero() {
		at = time.Now().In(s.cfg.Location).Truncate(time.Second)
	}
	target, err := s.serviceLevelTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	sum, err := servicelevel.SummaryOf(c.ctx, s.db, target, at)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	if sum.Queues == nil {
		sum.Queues = []servicelevel.HourRate{}
	}
	return &reply{body: ServiceLevelSummaryResponse{Summary: sum, Freshness: fresh}, fresh: fresh}, nil
}

// getComplaints answers a customer's open complaints, earliest deadline first.
func (s *Server) getComplaints(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	target, err := s.serviceLevelTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	items, err := servicelevel.OpenComplaints(c.ctx, s.db, target, id)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	if items == nil {
		items = []servicelevel.Complaint{}
	}
	return &reply{body: ComplaintsResponse{CustomerID: id, Items: items, Freshness: fresh}, fresh: fresh}, nil
}
