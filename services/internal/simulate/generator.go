package simulate

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Draft is a generated event before its time is stamped: its behaviour time, its
// channel and its typed payload.
type Draft struct {
	ID       string // unique within the run: "sim-<seed>-<customer index>-<n>"
	Customer string // the opaque customer id, the event's subject
	Index    int    // the customer's index in the population
	At       time.Time
	Channel  string
	Payload  events.Payload
}

// GeneratorConfig configures a Generator.
type GeneratorConfig struct {
	Params   *Params
	Channels []Channel
	Seed     uint64
	// Customers is the initial population; zero: Params.Population.Customers.
	Customers int
	// Start is the behaviour time of the first registrations.
	Start time.Time
	// End stops the generator: no event at or after End. Zero: no end.
	End time.Time
	// SendTime, in history mode, is when the events will be sent: an event older than
	// its channel's late-arrival limit then goes to the history channel if that
	// channel may write its type, and is not generated otherwise. Zero: every event
	// keeps its channel (live mode).
	SendTime time.Time
}

// Generator produces a reproducible stream of events: the same configuration gives
// the same drafts, ids included. Drafts come in behaviour-time order; every customer's
// customer.registered comes before their other events. A Generator is not safe for
// concurrent use.
type Generator struct {
	p        *Params
	seed     uint64
	loc      *time.Location
	channels map[string]*Channel
	history  *Channel
	start    time.Time
	end      time.Time
	sendTime time.Time

	mix           map[string]choice
	hours         choice
	regions       choice
	segInd        choice
	segEnt        choice
	queues        choice
	outcomes      map[string]choice
	purposes      choice
	categories    choice
	severities    choice
	resolutions   choice
	incidentKinds choice
	incidentSev   choice
	offerKinds    choice
	reversal      choice
	adjustment    choice
	driftOutcome  choice
	operators     choice
	portReasons   choice
	sudden        choice
	rechargeM     choice
	storeM        choice
	payM          choice
	brands        choice
	driftingShare float64

	idA, idB  uint64
	phoneSalt uint64
	acq       *rand.Rand
	inc       *rand.Rand
	incidents int
	initial   int
	activeN   int // customers registered and not terminated

	customers []*customer
	day       time.Time
	buf       []Draft
	pos       int
	carry     []Draft // events generated for after the day's end, handed out with the next day

	// The customer-day being generated.
	dayEnd time.Time
	today  []action
	actSeq int
}

// action is something a customer does at a time; it may emit events and schedule
// further actions.
type action struct {
	at  time.Time
	seq int
	fn  func(at time.Time)
}

// NewGenerator checks the configuration and builds the initial population.
func NewGenerator(cfg GeneratorConfig) (*Generator, error) {
	if cfg.Params == nil {
		return nil, errors.New("simulate: GeneratorConfig.Params: required")
	}
	p := cfg.Params
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: params: %w", err)
	}
	n := cfg.Customers
	if n == 0 {
		n = p.Population.Customers
	}
	if n < 1 || n > 10_000_000 {
		return nil, fmt.Errorf("simulate: GeneratorConfig.Customers %d: must be between 1 and 10,000,000", n)
	}
	if cfg.Start.IsZero() {
		return nil, errors.New("simulate: GeneratorConfig.Start: required")
	}
	if !cfg.End.IsZero() && !cfg.End.After(cfg.Start) {
		return nil, errors.New("simulate: GeneratorConfig.End: must be after Start")
	}
	chs := make(map[string]*Channel, len(cfg.Channels))
	for i := range cfg.Channels {
		ch := cfg.Channels[i]
		chs[ch.Name] = &ch
	}
	if err := checkRoutes(p, chs); err != nil {
		return nil, fmt.Errorf("simulate: routes: %w", err)
	}
	loc, _ := p.Location()
	g := &Generator{
		p: p, seed: cfg.Seed, loc: loc, channels: chs, history: chs[p.HistoryChannel],
		start: cfg.Start.In(loc), end: cfg.End, sendTime: cfg.SendTime,
		mix: map[string]choice{}, outcomes: map[string]choice{},
	}
	for k, m := range p.ChannelMix {
		g.mix[k] = newChoice(m)
	}
	g.hours = newChoiceSlice(p.HourWeights)
	rw := make([]float64, len(p.Population.Regions))
	for i, r := range p.Population.Regions {
		rw[i] = r.Weight
	}
	g.regions = newChoiceSlice(rw)
	g.segInd = newChoice(p.Population.Segments.Individual)
	g.segEnt = newChoice(p.Population.Segments.Enterprise)
	g.queues = newChoice(p.Calls.QueueMix)
	for q, m := range p.Calls.Outcomes {
		g.outcomes[q] = newChoice(m)
	}
	g.purposes = newChoice(p.Stores.Purposes)
	g.categories = newChoice(p.Complaints.Categories)
	sw := map[string]float64{}
	for name, s := range p.Complaints.Severities {
		sw[name] = s.Weight
	}
	g.severities = newChoice(sw)
	g.resolutions = newChoice(p.Complaints.Resolutions)
	g.incidentKinds = newChoice(p.Incidents.Kinds)
	g.incidentSev = newChoice(p.Incidents.Severities)
	g.offerKinds = newChoice(p.Offers.Kinds)
	g.reversal = newChoice(p.Corrections.ReversalReasons)
	g.adjustment = newChoice(p.Billing.AdjustmentReasons)
	g.driftOutcome = newChoice(p.Churn.Outcomes)
	g.operators = newChoice(p.Churn.TargetOperators)
	g.portReasons = newChoice(p.Churn.PortOutReasons)
	g.sudden = newChoice(p.Churn.SuddenReasons)
	g.rechargeM = newChoice(p.Recharge.Methods)
	g.storeM = newChoice(p.Recharge.StoreMethods)
	g.payM = newChoice(p.Billing.Methods)
	bw := make([]float64, len(p.Devices.Brands))
	for i, b := range p.Devices.Brands {
		bw[i] = b.Weight
	}
	g.brands = newChoiceSlice(bw)
	meanDrift := (p.Churn.DriftDays[0] + p.Churn.DriftDays[1]) / 2
	g.driftingShare = clamp(p.Churn.DriftPerMonth*meanDrift/daysPerMonth, 0, 0.5)

	pr := stream(cfg.Seed, streamPopulation)
	g.idA = 1 + 2*(pr.Uint64N(500_000_000_000)) // odd
	if g.idA%5 == 0 {
		g.idA += 2
	}
	g.idB = pr.Uint64N(1_000_000_000_000)
	g.phoneSalt = pr.Uint64N(100_000_000)
	g.acq = stream(cfg.Seed, streamAcquisition)
	g.inc = stream(cfg.Seed, streamIncidents)

	g.initial = n
	g.customers = make([]*customer, 0, n+n/8)
	spread := time.Duration(p.Population.InitialRegistrationHours * float64(time.Hour))
	for i := range n {
		at := g.start
		if spread > 0 {
			// Registration times rise with the index: the base is loaded in order.
			at = g.start.Add(time.Duration((float64(i) + pr.Float64()) / float64(n) * float64(spread)))
		}
		g.addCustomer(i, at, true)
	}
	g.day = g.start
	return g, nil
}

// addCustomer creates a customer and schedules their registration.
func (g *Generator) addCustomer(idx int, at time.Time, initial bool) {
	c := g.newCustomer(idx, at, initial)
	g.customers = append(g.customers, c)
	c.agenda = append(c.agenda, action{at: at, fn: func(at time.Time) { g.register(c, at, initial) }})
}

// Next returns the next draft in behaviour-time order, or false when the generator
// has reached its end. The draft is valid until the following call.
func (g *Generator) Next() (*Draft, bool) {
	for g.pos >= len(g.buf) {
		if !g.end.IsZero() && !g.day.Before(g.end) {
			return nil, false
		}
		g.runDay()
	}
	d := &g.buf[g.pos]
	g.pos++
	return d, true
}

// Active is the number of customers registered and not terminated.
func (g *Generator) Active() int { return g.activeN }

// runDay generates the events of the day starting at g.day, every customer's, sorted
// by time.
func (g *Generator) runDay() {
	d0 := g.day
	y, m, d := d0.Date()
	d1 := time.Date(y, m, d+1, 0, 0, 0, 0, g.loc)
	g.buf, g.pos = append(g.buf[:0], g.carry...), 0
	g.carry = g.carry[:0]
	g.dayEnd = d1
	g.acquire(d0, d1)
	g.networkIncidents(d0, d1)
	for _, c := range g.customers {
		g.customerDay(c, d0, d1)
	}
	slices.SortStableFunc(g.buf, func(a, b Draft) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
	// An interaction late in the day may end after midnight: its events wait for the
	// next day, so that the stream stays in time order.
	at := func(d Draft, t time.Time) int { return d.At.Compare(t) }
	i, _ := slices.BinarySearchFunc(g.buf, d1, at)
	g.carry = append(g.carry, g.buf[i:]...)
	g.buf = g.buf[:i]
	if !g.end.IsZero() {
		i, _ := slices.BinarySearchFunc(g.buf, g.end, at)
		g.buf = g.buf[:i]
	}
	g.day = d1
}

// customerDay runs one customer's day: the actions due, then the day's own activity,
// in time order.
func (g *Generator) customerDay(c *customer, d0, d1 time.Time) {
	if c.terminated {
		return
	}
	g.today = g.today[:0]
	keep := c.agenda[:0]
	for _, a := range c.agenda {
		if a.at.Before(d1) {
			g.today = append(g.today, a)
		} else {
			keep = append(keep, a)
		}
	}
	c.agenda = keep
	if c.active && c.registeredAt.Before(d0) {
		g.dailyActivity(c, d0, d1)
	}
	first := len(g.buf)
	for len(g.today) > 0 && !c.terminated {
		// Take the earliest action; actions may add more for today.
		k := 0
		for i, a := range g.today {
			if a.at.Before(g.today[k].at) || (a.at.Equal(g.today[k].at) && a.seq < g.today[k].seq) {
				k = i
			}
		}
		a := g.today[k]
		g.today[k] = g.today[len(g.today)-1]
		g.today = g.today[:len(g.today)-1]
		a.fn(a.at)
	}
	if c.terminated {
		// Nothing after the end of the subscription.
		out := g.buf[:first]
		for _, d := range g.buf[first:] {
			if !d.At.After(c.terminatedAt) {
				out = append(out, d)
			}
		}
		g.buf = out
		c.agenda = nil
		return
	}
	if c.active {
		g.endOfDay(c, d0, d1)
	}
}

// schedule runs fn at t: today, in time order, or on its day.
func (g *Generator) schedule(c *customer, t time.Time, fn func(at time.Time)) {
	g.actSeq++
	a := action{at: t, seq: g.actSeq, fn: fn}
	if t.Before(g.dayEnd) {
		g.today = append(g.today, a)
		return
	}
	c.agenda = append(c.agenda, a)
}

// emit appends a draft and returns a reference to the event.
func (g *Generator) emit(c *customer, at time.Time, channel string, p events.Payload) events.EventRef {
	c.n++
	id := fmt.Sprintf("sim-%d-%d-%d", g.seed, c.idx, c.n)
	g.buf = append(g.buf, Draft{ID: id, Customer: c.id, Index: c.idx, At: at, Channel: channel, Payload: p})
	return events.EventRef{Source: g.channels[channel].Source, ID: id}
}

// route picks the channel of an interaction of a kind at time at, or false if no
// channel can carry it (history mode: older than every suitable channel's limit).
func (g *Generator) route(c *customer, kind string, at time.Time) (string, bool) {
	ch := g.mix[kind].pick(c.r)
	types := kindTypes[kind]
	if ch == storeChannel {
		types = append(slices.Clone(types), "store.visited")
	}
	return g.fit(ch, at, types...)
}

// fit keeps channel ch for events of the given types at time at if its late-arrival
// limit allows; in history mode it falls back to the history channel.
func (g *Generator) fit(ch string, at time.Time, types ...string) (string, bool) {
	if g.fresh(ch, at) {
		return ch, true
	}
	h := g.history
	if h == nil || !g.fresh(h.Name, at) {
		return "", false
	}
	for _, t := range types {
		if !h.Allows(t) {
			return "", false
		}
	}
	return h.Name, true
}

// fresh reports whether an event at time at is within channel ch's late-arrival limit
// when sent.
func (g *Generator) fresh(ch string, at time.Time) bool {
	if g.sendTime.IsZero() {
		return true
	}
	limit := g.channels[ch].MaxAge
	if limit == 0 {
		limit = DefaultMaxAge
	}
	return g.sendTime.Sub(at) < limit-ageMargin
}

// timeIn draws a time of activity in [lo, hi) following the hour weights.
func (g *Generator) timeIn(r *rand.Rand, lo, hi time.Time) time.Time {
	y, m, d := lo.Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, g.loc)
	for range 8 {
		h := g.hours.index(r)
		t := midnight.Add(time.Duration(h)*time.Hour + time.Duration(r.Int64N(int64(time.Hour))))
		if !t.Before(lo) && t.Before(hi) {
			return t.Truncate(time.Second)
		}
	}
	return lo.Add(time.Duration(r.Int64N(int64(hi.Sub(lo))))).Truncate(time.Second)
}

// Truth is what the simulator knows about a customer and the log does not say: the
// labels churn scorers are evaluated against.
type Truth struct {
	Customer     string    `json:"customer"`
	Prepaid      bool      `json:"prepaid"`
	Enterprise   bool      `json:"enterprise"`
	Segment      string    `json:"segment"`
	Region       string    `json:"region"`
	ValueCNY     float64   `json:"value_cny"`
	RegisteredAt time.Time `json:"registered_at"`
	// DriftStart and DriftEnd bound the customer's drift, when drifting; Outcome is
	// what the drift ends in (recover, port_out, customer_request, non_payment);
	// Retained, that a retention call turned a port-out around.
	DriftStart   time.Time `json:"drift_start,omitzero"`
	DriftEnd     time.Time `json:"drift_end,omitzero"`
	Outcome      string    `json:"outcome,omitempty"`
	Retained     bool      `json:"retained,omitempty"`
	TerminatedAt time.Time `json:"terminated_at,omitzero"`
}

// Truth returns the ground truth of every customer created so far.
func (g *Generator) Truth() []Truth {
	out := make([]Truth, len(g.customers))
	for i, c := range g.customers {
		out[i] = Truth{Customer: c.id, Prepaid: c.prepaid, Enterprise: c.enterprise, Segment: c.segment,
			Region: g.p.Population.Regions[c.region].ID, ValueCNY: c.value, RegisteredAt: c.registeredAt,
			DriftStart: c.drift.start, DriftEnd: c.drift.end, Outcome: c.drift.outcome, Retained: c.drift.retained,
			TerminatedAt: c.terminatedAt}
	}
	return out
}
