package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// customer is one simulated customer: who they are, and the state of their behaviour.
type customer struct {
	idx        int
	id         string
	r          *rand.Rand // the customer's own stream: behaviour never depends on others'
	n          int        // events minted, for event ids
	refs       int        // channel references minted (recharge, bill, call ids...)
	ident      identity
	retained   bool // a retention call turned a port-out around
	enterprise bool
	segment    string
	region     int
	prepaid    bool
	value      float64 // monthly spend at full engagement, CNY
	usageF     float64 // usage factor, mean one over the population
	plan       int     // index into Params.Plans
	store      string  // home business hall
	autoDebit  bool
	dealer     string

	baseSentiment float64
	bad           float64 // recent bad experience, decaying

	registeredAt time.Time
	active       bool // registered and not terminated
	terminated   bool
	terminatedAt time.Time
	leaving      bool // a termination is scheduled
	contractEnd  time.Time

	balance    float64 // prepaid
	monthSpend float64 // postpaid: spend of the month so far
	lastBill   string  // postpaid: id of the latest bill issued
	lastBillAt time.Time

	drift driftState

	cur, prev dayEffect // today's and yesterday's incident effects
	agenda    []action
}

// driftState is a customer's drift towards leaving.
type driftState struct {
	start, end time.Time // zero start: not drifting
	outcome    string    // recover, port_out, customer_request, non_payment
	recoverEnd time.Time // outcome recover: back to normal by then
	retained   bool
}

// dayEffect is what network incidents did to a customer's day.
type dayEffect struct {
	dropF float64 // dropped-call rate factor
	dataF float64 // data usage factor
}

func (e *dayEffect) reset() { *e = dayEffect{dropF: 1, dataF: 1} }

// progress is how far the customer has drifted at t: 0 (not at all) to 1.
func (c *customer) progress(t time.Time) float64 {
	d := &c.drift
	if d.start.IsZero() || t.Before(d.start) {
		return 0
	}
	if t.Before(d.end) {
		return float64(t.Sub(d.start)) / float64(d.end.Sub(d.start))
	}
	if !d.recoverEnd.IsZero() {
		if !t.Before(d.recoverEnd) {
			return 0
		}
		return float64(d.recoverEnd.Sub(t)) / float64(d.recoverEnd.Sub(d.end))
	}
	return 1
}

// engagement scales usage and spend: 1, falling while the customer drifts.
func (g *Generator) engagement(c *customer, t time.Time) float64 {
	return 1 - g.p.Churn.UsageDrop*c.progress(t)
}

// sentiment is the customer's current disposition, 0 (hostile) to 1 (delighted).
func (g *Generator) sentiment(c *customer, t time.Time) float64 {
	s := c.baseSentiment - g.p.Churn.SentimentDrop*c.progress(t) - 0.04*c.bad
	return clamp(s, 0.02, 0.98)
}

// fee is the monthly fee of the customer's plan.
func (g *Generator) fee(c *customer) float64 { return g.p.Plans[c.plan].MonthlyFeeCNY }

// dailySpend is what the customer spends on day t, before noise.
func (g *Generator) dailySpend(c *customer, t time.Time) float64 {
	fee := g.fee(c)
	return (fee + math.Max(0, c.value-fee)*g.engagement(c, t)) / daysPerMonth
}

const daysPerMonth = 30.44

// customerID is the opaque id of customer i: "C" and twelve digits, a bijection of the
// index salted by the seed, so ids never repeat within a run.
func (g *Generator) customerID(i int) string {
	const m = 1_000_000_000_000
	return fmt.Sprintf("C%012d", (uint64(i)*g.idA+g.idB)%m)
}

// newCustomer draws a customer's attributes. A customer's attributes and behaviour
// come from their own random stream, so they do not depend on anyone else's.
func (g *Generator) newCustomer(idx int, registeredAt time.Time, initial bool) *customer {
	r := stream(g.seed, uint64(idx))
	p := g.p
	c := &customer{idx: idx, id: g.customerID(idx), r: r, registeredAt: registeredAt}
	c.cur.reset()
	c.prev.reset()
	c.enterprise = bernoulli(r, p.Population.EnterpriseShare)
	c.region = g.regions.index(r)
	reg := &p.Population.Regions[c.region]
	c.store = storeID(reg, 1+r.IntN(reg.Stores))
	c.dealer = fmt.Sprintf("DL-%s-%02d", reg.ID, 1+r.IntN(20))

	// Spend: lognormal, with a correlated usage factor of mean one.
	z := r.NormFloat64()
	var v Lognormal
	if c.enterprise {
		c.segment = g.segEnt.pick(r)
		c.prepaid = false
		v = p.Value.Enterprise
	} else {
		c.segment = g.segInd.pick(r)
		c.prepaid = bernoulli(r, p.Population.PrepaidShare)
		v = p.Value.Individual
	}
	value := v.Median * math.Exp(v.Sigma*z)
	if f, ok := p.Value.SegmentFactor[c.segment]; ok {
		value *= f
	}
	if !c.enterprise && !c.prepaid {
		value *= p.Value.PostpaidFactor
	}
	c.value = clamp(value, v.Min, v.Max)
	s, rho := p.Usage.CustomerSigma, p.Usage.ValueCorrelation
	zu := rho*z + math.Sqrt(1-rho*rho)*r.NormFloat64()
	c.usageF = math.Exp(s*zu - s*s/2)
	c.plan = g.planFor(c)
	c.autoDebit = !c.prepaid && bernoulli(r, p.Billing.AutoDebitShare)
	c.baseSentiment = clamp(0.74+0.12*r.NormFloat64(), 0.15, 0.98)
	if !c.prepaid && bernoulli(r, p.Population.ContractShare) {
		months := 1 + r.IntN(p.Population.ContractMonths)
		if !initial {
			months = p.Population.ContractMonths
		}
		c.contractEnd = registeredAt.AddDate(0, months, 0)
	}
	if c.prepaid {
		// Somewhere in the cycle between two recharges.
		c.balance = r.Float64() * g.dailySpend(c, registeredAt) * daysPerMonth * between(r, p.Recharge.CoverMonths)
	}
	if initial && bernoulli(r, g.driftingShare) {
		// The steady state: some of the base is already drifting.
		days := between(r, p.Churn.DriftDays)
		done := r.Float64() * days
		start := registeredAt.Add(-time.Duration(done * float64(24*time.Hour)))
		g.startDrift(c, start, days)
	}
	return c
}

// planFor is the dearest plan of the customer's kind within their means.
func (g *Generator) planFor(c *customer) int {
	kind := "postpaid"
	if c.prepaid {
		kind = "prepaid"
	}
	best := -1
	for i, pl := range g.p.Plans {
		if pl.Kind != kind {
			continue
		}
		if best < 0 || pl.MonthlyFeeCNY <= c.value*g.p.Value.PlanFeeShare {
			best = i
		}
	}
	return best
}

// nextPlan is the plan one step up (dir 1) or down (dir -1) of the same kind, or -1.
func (g *Generator) nextPlan(c *customer, dir int) int {
	kind := g.p.Plans[c.plan].Kind
	for i := c.plan + dir; i >= 0 && i < len(g.p.Plans); i += dir {
		if g.p.Plans[i].Kind == kind {
			return i
		}
	}
	return -1
}

func storeID(reg *Region, n int) string { return fmt.Sprintf("ST-%s-%03d", reg.ID, n) }

func staffID(store string, n int) string { return fmt.Sprintf("%s-S%02d", store, n) }

func agentID(n int) string { return fmt.Sprintf("AG%05d", n) }
