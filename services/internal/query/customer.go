package query

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
)

// Profile is the customer 360 profile as the API shows it. The personal fields are
// always present: masked or clear according to the viewer's access, null when absent
// or when their data key was erased (Erased is then true). Other optional fields are
// omitted when absent.
type Profile struct {
	CustomerID string  `json:"customer_id"`
	Partition  int     `json:"partition"`
	Name       *string `json:"name"`
	Phone      *string `json:"phone"`
	IDType     string  `json:"id_type,omitempty"`
	IDNumber   *string `json:"id_number"`
	Address    *string `json:"address"`
	Erased     bool    `json:"erased"`

	CustomerType string       `json:"customer_type,omitempty"`
	Segment      string       `json:"segment,omitempty"`
	Region       string       `json:"region,omitempty"`
	Plan         *events.Plan `json:"plan,omitempty"`
	ContractEnd  string       `json:"contract_end,omitempty"`
	EnterpriseID string       `json:"enterprise_id,omitempty"`
	RegisteredAt *time.Time   `json:"registered_at,omitempty"`

	Channels         map[string]*customer360.ChannelStat `json:"channels"`
	LifetimeSpendFen int64                               `json:"lifetime_spend_fen"`
	MonthlySpend     map[string]int64                    `json:"monthly_spend"`
	Spend3MFen       int64                               `json:"spend_3m_fen"`
	MonthlyAvgFen    int64                               `json:"monthly_average_fen"`
	AsOfMonth        string                              `json:"as_of_month"`
	OpenComplaints   []customer360.Complaint             `json:"open_complaints"`
	ComplaintsTotal  int                                 `json:"complaints_total"`
	LastSatisfaction *customer360.Score                  `json:"last_satisfaction,omitempty"`
	LastNPS          *customer360.Score                  `json:"last_nps,omitempty"`

	Device             *customer360.Device `json:"device,omitempty"`
	PortOutRequestedAt *time.Time          `json:"port_out_requested_at,omitempty"`
	PortOutTarget      string              `json:"port_out_target,omitempty"`
	TerminatedAt       *time.Time          `json:"terminated_at,omitempty"`
	TerminationReason  string              `json:"termination_reason,omitempty"`

	Tier          string    `json:"tier"`
	Lifecycle     string    `json:"lifecycle"`
	EventsTotal   int64     `json:"events_total"`
	LastEventTime time.Time `json:"last_event_time"`
	// Seq is the stream sequence of the customer's last event the profile reflects.
	Seq uint64 `json:"seq"`
}

func profileView(p *customer360.Profile, pers personal) *Profile {
	v := &Profile{
		CustomerID: p.CustomerID, Partition: p.Partition,
		Name: pers.name, Phone: pers.phone, IDType: p.IDType, IDNumber: pers.idNumber, Address: pers.address, Erased: pers.erased,
		CustomerType: p.CustomerType, Segment: p.Segment, Region: p.Region, Plan: p.Plan,
		ContractEnd: p.ContractEnd, EnterpriseID: p.EnterpriseID, RegisteredAt: p.RegisteredAt,
		Channels: p.Channels, LifetimeSpendFen: p.LifetimeSpendFen, MonthlySpend: p.MonthlySpend,
		Spend3MFen: p.Spend3MFen, MonthlyAvgFen: p.MonthlyAverageFen, AsOfMonth: p.AsOfMonth.String(),
		OpenComplaints: p.OpenComplaints, ComplaintsTotal: p.ComplaintsTotal,
		LastSatisfaction: p.LastSatisfaction, LastNPS: p.LastNPS,
		Device: p.Device, PortOutRequestedAt: p.PortOutRequestedAt, PortOutTarget: p.PortOutTarget,
		TerminatedAt: p.TerminatedAt, TerminationReason: p.TerminationReason,
		Tier: p.Tier, Lifecycle: p.Lifecycle, EventsTotal: p.EventsTotal, LastEventTime: p.LastEventTime, Seq: p.Seq,
	}
	if v.Channels == nil {
		v.Channels = map[string]*customer360.ChannelStat{}
	}
	if v.MonthlySpend == nil {
		v.MonthlySpend = map[string]int64{}
	}
	if v.OpenComplaints == nil {
		v.OpenComplaints = []customer360.Complaint{}
	}
	return v
}

// ProfileResponse is the body of GET /v1/customers/{id}.
type ProfileResponse struct {
	Profile   *Profile   `json:"profile"`
	Access    Access     `json:"access"`
	Freshness *Freshness `json:"freshness"`
}

func (s *Server) getCustomer(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	if _, err := parseParams(c); err != nil {
		return nil, err
	}
	target, err := s.customer360Target(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	p, err := customer360.Get(c.ctx, s.db, target, id)
	if errors.Is(err, customer360.ErrNotFound) {
		return nil, notFoundCustomer(fresh)
	}
	if err != nil {
		return nil, err
	}
	acc := accessOf(c.viewer)
	pers, err := openAll(c.ctx, s.keys, acc, []sealedFields{sealedOf(p)})
	if err != nil {
		return nil, err
	}
	if err := s.recordReads(c, "customer", []audited{{id, pers[0]}}); err != nil {
		return nil, err
	}
	return &reply{body: ProfileResponse{Profile: profileView(p, pers[0]), Access: acc, Freshness: fresh}, fresh: fresh}, nil
}

func notFoundCustomer(fresh *Freshness) *apiError {
	return &apiError{status: http.StatusNotFound, code: codeNotFound, fresh: fresh,
		message: fmt.Sprintf("no such customer in the read model as of stream sequence %d of its partition", fresh.Seq)}
}

// TimelineResponse is the body of GET /v1/customers/{id}/timeline.
type TimelineResponse struct {
	CustomerID string           `json:"customer_id"`
	Items      []timeline.Entry `json:"items"`
	// Next is the cursor of the following page; nil on the last page.
	Next      *string    `json:"next"`
	Freshness *Freshness `json:"freshness"`
}

func (s *Server) getTimeline(c *call) (*reply, error) {
	id, err := pathCustomer(c)
	if err != nil {
		return nil, err
	}
	p, err := parseParams(c, "type", "source", "from", "to", "cursor", "limit")
	if err != nil {
		return nil, err
	}
	q := timeline.Query{Customer: id}
	if q.Types, err = p.list("type", func(t string) error {
		if !s.types[t] {
			return fmt.Errorf("unknown event type %q", t)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if q.Sources, err = p.list("source", validSource); err != nil {
		return nil, err
	}
	if q.From, err = p.time("from"); err != nil {
		return nil, err
	}
	if q.To, err = p.time("to"); err != nil {
		return nil, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, badParam("to", "must be after from (the range is [from, to))")
	}
	if q.Cursor, err = p.cursor(); err != nil {
		return nil, err
	}
	if q.Limit, err = p.limit(); err != nil {
		return nil, err
	}

	target, err := s.timelineTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.customerFreshness(c.ctx, target, id)
	if err != nil {
		return nil, err
	}
	items, next, err := timeline.Read(c.ctx, s.db, target, q)
	if errors.Is(err, timeline.ErrBadCursor) {
		return nil, badParam("cursor", "malformed cursor: pass the \"next\" value of the previous page unchanged")
	}
	if err != nil {
		return nil, err
	}
	if len(items) == 0 && q.Cursor == "" {
		// Nothing matched: an unknown customer, or filters that exclude everything.
		probe, _, err := timeline.Read(c.ctx, s.db, target, timeline.Query{Customer: id, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(probe) == 0 {
			return nil, notFoundCustomer(fresh)
		}
	}
	if items == nil {
		items = []timeline.Entry{}
	}
	for i := range items {
		items[i].Time, items[i].StoredAt = items[i].Time.UTC(), items[i].StoredAt.UTC()
	}
	body := TimelineResponse{CustomerID: id, Items: items, Freshness: fresh}
	if next != "" {
		body.Next = &next
	}
	return &reply{body: body, fresh: fresh}, nil
}
