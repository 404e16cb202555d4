package customer360

import (
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/valuetier"
)

// Profile is the folded state of one customer.
type Profile struct {
	CustomerID string `json:"customer_id"`
	Partition  int    `json:"partition"`

	// Identity and contact, sealed as in the log.
	Name     *events.Sealed `json:"name,omitempty"`
	Phone    *events.Sealed `json:"phone,omitempty"`
	IDType   string         `json:"id_type,omitempty"`
	IDNumber *events.Sealed `json:"id_number,omitempty"`
	Address  *events.Sealed `json:"address,omitempty"`
	// PhoneHash is the keyed search hash of the phone (see PhoneHash).
	PhoneHash []byte `json:"phone_hash,omitempty"`

	CustomerType string       `json:"customer_type,omitempty"`
	Segment      string       `json:"segment,omitempty"`
	Region       string       `json:"region,omitempty"`
	Plan         *events.Plan `json:"plan,omitempty"`
	ContractEnd  string       `json:"contract_end,omitempty"`
	EnterpriseID string       `json:"enterprise_id,omitempty"`
	RegisteredAt *time.Time   `json:"registered_at,omitempty"`

	Channels map[string]*ChannelStat `json:"channels,omitempty"` // by source

	LifetimeSpendFen int64            `json:"lifetime_spend_fen"`
	MonthlySpend     map[string]int64 `json:"monthly_spend,omitempty"` // "YYYY-MM" -> fen, last 13 months

	OpenComplaints  []Complaint `json:"open_complaints,omitempty"`
	ComplaintsTotal int         `json:"complaints_total"`

	LastSatisfaction *Score `json:"last_satisfaction,omitempty"` // 1-5: complaint resolution or CSAT survey
	LastNPS          *Score `json:"last_nps,omitempty"`          // 0-10

	Device             *Device    `json:"device,omitempty"`
	PortOutRequestedAt *time.Time `json:"port_out_requested_at,omitempty"`
	PortOutTarget      string     `json:"port_out_target,omitempty"`
	TerminatedAt       *time.Time `json:"terminated_at,omitempty"`
	TerminationReason  string     `json:"termination_reason,omitempty"`

	Tier string `json:"tier"`
	// AsOfMonth is the month the tier and rolling spend are computed for: the later of
	// the last event's month and the latest clock tick's month, so spend decays with
	// event time even while the customer is silent.
	AsOfMonth         valuetier.Month `json:"as_of_month"`
	Spend3MFen        int64           `json:"spend_3m_fen"`
	MonthlyAverageFen int64           `json:"monthly_average_fen"` // over the tier window
	Lifecycle         string          `json:"lifecycle"`
	// EventsTotal counts the customer's events the profile reflects, and SeqHash is the
	// order-independent hash of their stream sequences (see SeqHash); retracted events
	// and the retractions themselves are counted too: they were consumed, they just do
	// not count in any aggregate. `verify` recomputes both from the log.
	EventsTotal int64 `json:"events_total"`
	SeqHash     int64 `json:"seq_hash"`
	// RechargeTotalFen is the lifetime sum of recharge.completed minus recharge.reversed
	// amounts, retracted events left out.
	RechargeTotalFen int64     `json:"recharge_total_fen"`
	LastEventTime    time.Time `json:"last_event_time"`
	Seq              uint64    `json:"seq"`

	phoneChanged bool
	// absent: the batch found no row for the customer (store copies it in).
	absent bool
}

// ChannelStat counts a customer's touches through one channel (source).
type ChannelStat struct {
	Count int64     `json:"count"`
	Last  time.Time `json:"last"`
}

// Complaint is an open complaint.
type Complaint struct {
	ID         string    `json:"id"`
	Category   string    `json:"category"`
	Severity   string    `json:"severity"`
	OpenedAt   time.Time `json:"opened_at"`
	PromisedBy time.Time `json:"promised_by"`
}

// Score is a satisfaction or NPS answer.
type Score struct {
	Score int       `json:"score"`
	At    time.Time `json:"at"`
}

// Device is the customer's current handset.
type Device struct {
	Brand string `json:"brand,omitempty"`
	Model string `json:"model,omitempty"`
	Since string `json:"since,omitempty"` // purchase date
}

// Lifecycle stages.
const (
	StageNew        = "new"         // registered less than 90 days before its last event
	StageActive     = "active"      //
	StagePortingOut = "porting_out" // a port-out request is pending
	StageTerminated = "terminated"
)

// fold applies one event to the profile. It is a pure function of the profile and the
// event: no clock, no I/O.
func (p *Profile) fold(e *events.Event, payload events.Payload, tiers valuetier.Config) {
	p.EventsTotal++
	if _, ok := payload.(*events.DeadLetterDiscarded); ok {
		// An operator's decision about another event, not a touch of the customer: it
		// is counted as consumed (verify counts it) and changes nothing else.
		return
	}
	if _, ok := payload.(*events.CustomerErased); ok {
		// Not a touch either: the personal fields and their search hash go (purge.go).
		p.erase()
		return
	}
	if e.Time.After(p.LastEventTime) {
		p.LastEventTime = e.Time
	}
	if p.Channels == nil {
		p.Channels = map[string]*ChannelStat{}
	}
	ch := p.Channels[e.Source]
	if ch == nil {
		ch = &ChannelStat{}
		p.Channels[e.Source] = ch
	}
	ch.Count++
	if e.Time.After(ch.Last) {
		ch.Last = e.Time
	}
	switch d := payload.(type) {
	case *events.CustomerRegistered:
		p.Name, p.Phone, p.IDNumber, p.Address = d.Name.Sealed(), d.Phone.Sealed(), d.IDNumber.Sealed(), d.Address.Sealed()
		p.phoneChanged = true
		p.IDType, p.CustomerType, p.Segment, p.Region = d.IDType, d.CustomerType, d.Segment, d.Region
		plan := d.Plan
		p.Plan = &plan
		p.ContractEnd, p.EnterpriseID = d.ContractEnd, d.EnterpriseID
		at := e.Time
		p.RegisteredAt = &at
	case *events.CustomerUpdated:
		if s := d.Name.Sealed(); s != nil {
			p.Name = s
		}
		if s := d.Phone.Sealed(); s != nil {
			p.Phone, p.phoneChanged = s, true
		}
		if s := d.IDNumber.Sealed(); s != nil {
			p.IDNumber = s
		}
		if s := d.Address.Sealed(); s != nil {
			p.Address = s
		}
		setIf(&p.IDType, d.IDType)
		setIf(&p.Region, d.Region)
		setIf(&p.Segment, d.Segment)
		setIf(&p.ContractEnd, d.ContractEnd)
		setIf(&p.EnterpriseID, d.EnterpriseID)
	case *events.PlanChanged:
		plan := d.To
		p.Plan = &plan
		setIf(&p.ContractEnd, d.ContractEnd)
	case *events.RechargeCompleted:
		p.spend(tiers, e.Time, d.Amount.Fen)
		p.RechargeTotalFen += d.Amount.Fen
	case *events.RechargeReversed:
		p.spend(tiers, e.Time, -d.Amount.Fen)
		p.RechargeTotalFen -= d.Amount.Fen
	case *events.BillIssued:
		p.spend(tiers, e.Time, d.Amount.Fen)
	case *events.BillAdjusted:
		p.spend(tiers, e.Time, d.Amount.Fen)
	case *events.ComplaintOpened:
		p.ComplaintsTotal++
		p.OpenComplaints = slices.DeleteFunc(p.OpenComplaints, func(c Complaint) bool { return c.ID == d.ComplaintID })
		p.OpenComplaints = append(p.OpenComplaints, Complaint{ID: d.ComplaintID, Category: d.Category, Severity: d.Severity,
			OpenedAt: e.Time, PromisedBy: d.PromisedBy})
	case *events.ComplaintResolved:
		p.OpenComplaints = slices.DeleteFunc(p.OpenComplaints, func(c Complaint) bool { return c.ID == d.ComplaintID })
		if d.Satisfaction > 0 {
			p.LastSatisfaction = &Score{Score: d.Satisfaction, At: e.Time}
		}
	case *events.SurveyAnswered:
		switch d.Kind {
		case "nps":
			p.LastNPS = &Score{Score: d.Score, At: e.Time}
		case "csat":
			p.LastSatisfaction = &Score{Score: d.Score, At: e.Time}
		}
	case *events.DeviceChanged:
		p.Device = &Device{Brand: d.Brand, Model: d.Model, Since: d.PurchasedAt}
	case *events.PortOutRequested:
		at := e.Time
		p.PortOutRequestedAt, p.PortOutTarget = &at, d.TargetOperator
	case *events.SubscriptionTerminated:
		at := d.EffectiveAt
		p.TerminatedAt, p.TerminationReason = &at, d.Reason
	}
	p.derive(tiers)
}

// spend records money the customer brought in the month of the event.
func (p *Profile) spend(tiers valuetier.Config, at time.Time, fen int64) {
	if p.MonthlySpend == nil {
		p.MonthlySpend = map[string]int64{}
	}
	m := tiers.MonthOf(at)
	p.MonthlySpend[m.String()] += fen
	p.LifetimeSpendFen += fen
	// Keep the last 13 months.
	for k := range p.MonthlySpend {
		if km, err := valuetier.ParseMonth(k); err == nil && km < m-12 {
			delete(p.MonthlySpend, k)
		}
	}
}

// months returns the spend buckets keyed by month.
func (p *Profile) months() valuetier.Spend {
	s := valuetier.Spend{}
	for k, v := range p.MonthlySpend {
		if m, err := valuetier.ParseMonth(k); err == nil {
			s[m] = v
		}
	}
	return s
}

// derive recomputes what follows from the rest: tier, rolling spend, lifecycle.
func (p *Profile) derive(tiers valuetier.Config) {
	if m := tiers.MonthOf(p.LastEventTime); m > p.AsOfMonth {
		p.AsOfMonth = m
	}
	now := p.AsOfMonth
	s := p.months()
	p.Tier = tiers.Tier(s, now)
	p.MonthlyAverageFen = tiers.Average(s, now)
	p.Spend3MFen = s[now] + s[now-1] + s[now-2]
	switch {
	case p.TerminatedAt != nil:
		p.Lifecycle = StageTerminated
	case p.PortOutRequestedAt != nil:
		p.Lifecycle = StagePortingOut
	case p.RegisteredAt != nil && p.LastEventTime.Sub(*p.RegisteredAt) < 90*24*time.Hour:
		p.Lifecycle = StageNew
	default:
		p.Lifecycle = StageActive
	}
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// SeqHash is the order-independent hash of a set of stream sequences: the sum, modulo
// 2^64, of splitmix64 of each sequence, read as a signed 64-bit integer (a PostgreSQL
// bigint). Unlike XOR, a sequence counted twice does not cancel out. A profile's
// SeqHash covers exactly the events counted in EventsTotal.
func SeqHash(seqs ...uint64) int64 {
	var h uint64
	for _, s := range seqs {
		h += splitmix64(s)
	}
	return int64(h)
}

// AddSeq returns hash h with sequence seq added.
func AddSeq(h int64, seq uint64) int64 { return int64(uint64(h) + splitmix64(seq)) }

// splitmix64 is the finaliser of the SplitMix64 generator: a bijective 64-bit mix.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
