package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/touchstream/touchstream/events"
)

const (
	dealerChannel = "dealer"
	day           = 24 * time.Hour
)

// later schedules fn on the customer's agenda, whatever the day (used outside the
// customer's own day, e.g. by regional incidents).
func (g *Generator) later(c *customer, t time.Time, fn func(at time.Time)) {
	g.actSeq++
	c.agenda = append(c.agenda, action{at: t, seq: g.actSeq, fn: fn})
}

// ref mints a channel reference (recharge id, bill id, call id...).
func (g *Generator) ref(prefix string, c *customer) string {
	c.refs++
	return fmt.Sprintf("%s-%d-%d-%d", prefix, g.seed, c.idx, c.refs)
}

func (g *Generator) date(t time.Time) string { return t.In(g.loc).Format(time.DateOnly) }

func fen(cny float64) int64 { return int64(math.Round(cny * 100)) }

func hours(h float64) time.Duration { return time.Duration(h * float64(time.Hour)) }

func (g *Generator) planPayload(i int) events.Plan {
	pl := g.p.Plans[i]
	return events.Plan{ID: pl.ID, Name: pl.Name, Kind: pl.Kind, MonthlyFee: events.CNY(fen(pl.MonthlyFeeCNY))}
}

// register emits the customer's registration: the first event of every customer.
func (g *Generator) register(c *customer, at time.Time, initial bool) {
	p := g.p
	var ch string
	var ok bool
	if initial && p.Population.InitialLoadChannel != "" {
		ch, ok = g.fit(p.Population.InitialLoadChannel, at, events.TypeCustomerRegistered)
	} else {
		ch, ok = g.route(c, "registration", at)
	}
	if !ok {
		// Too old for any channel: the customer never enters the log.
		c.terminated = true
		return
	}
	reg := &p.Population.Regions[c.region]
	c.ident = newIdentity(c.r, c.idx, g.phoneSalt, reg, c.enterprise, c.segment, at)
	pl := &events.CustomerRegistered{
		Name: events.Clear(c.ident.name), Phone: events.Clear(c.ident.phone),
		IDType: c.ident.idType, IDNumber: events.Clear(c.ident.idNumber), Address: events.Clear(c.ident.address),
		CustomerType: "individual", Segment: c.segment, Region: reg.ID, Plan: g.planPayload(c.plan),
	}
	if c.enterprise {
		pl.CustomerType = "enterprise"
		pl.EnterpriseID = "ENT" + c.id[1:]
	}
	if !c.contractEnd.IsZero() {
		pl.ContractEnd = g.date(c.contractEnd)
	}
	switch ch {
	case dealerChannel:
		pl.DealerID = c.dealer
		if !c.enterprise && bernoulli(c.r, p.Population.DealerIncompleteShare) {
			// Poor data at the first touch, completed later at a store.
			pl.IDType, pl.IDNumber, pl.Address = "", events.Personal{}, events.Personal{}
			fix := at.Add(time.Duration(between(c.r, p.Population.DealerIncompleteFixDays) * float64(day)))
			g.later(c, fix, func(at time.Time) { g.completeRegistration(c, at) })
		}
	case storeChannel:
		pl.StoreID = c.store
		pl.StaffID = staffID(c.store, 1+c.r.IntN(p.Stores.StaffPerStore))
	}
	c.active = true
	g.activeN++
	g.emit(c, at, ch, pl)
	if ch == storeChannel {
		// The counter service ticket closes after the registration.
		g.visit(c, at.Add(time.Second), "purchase", pl.StaffID)
	}
}

// completeRegistration fills what a dealer left out, at a store.
func (g *Generator) completeRegistration(c *customer, at time.Time) {
	ch, ok := g.fit(storeChannel, at, "customer.updated", "store.visited")
	if !ok || !c.active {
		return
	}
	_, _, end := g.visit(c, at, "other", "")
	g.emit(c, end.Add(-30*time.Second), ch, &events.CustomerUpdated{
		IDType: c.ident.idType, IDNumber: events.Clear(c.ident.idNumber), Address: events.Clear(c.ident.address),
	})
}

// dailyActivity draws the day's activity of an active customer.
func (g *Generator) dailyActivity(c *customer, d0, d1 time.Time) {
	p, r := g.p, c.r
	prog := c.progress(d0)
	yesterday := d0.Add(-day / 2)
	g.schedule(c, g.hourIn(r, d0, p.Usage.PublishHours), func(at time.Time) { g.usage(c, at, yesterday) })
	if !c.prepaid && d0.Day() == 1 {
		period := time.Date(d0.Year(), d0.Month()-1, 1, 0, 0, 0, 0, g.loc)
		g.schedule(c, g.hourIn(r, d0, p.Billing.IssueHours), func(at time.Time) { g.bill(c, at, period) })
	}
	if c.prepaid && c.balance < g.dailySpend(c, d0)*p.Recharge.TriggerDays {
		// Drifting customers who are leaving let the balance run down.
		stop := c.drift.outcome != "" && c.drift.outcome != "recover" && prog > 0.6 && bernoulli(r, prog*prog)
		if !stop && bernoulli(r, 0.8) {
			g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.recharge(c, at) })
		}
	}
	n := func(rate float64) int { return poisson(r, rate*float64(d1.Sub(d0))/float64(day)) }
	for range n(p.Calls.InboundPerDay * (1 + p.Churn.CareCallBoost*prog)) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.inboundCall(c, at, "", false) })
	}
	for range n(p.Stores.VisitsPerDay) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.storeVisit(c, at) })
	}
	for range n(p.Complaints.PerDay * (1 + p.Churn.ComplaintBoost*prog)) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.complaint(c, at, g.categories.pick(c.r)) })
	}
	for range n(p.Devices.PerDay) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.deviceChange(c, at) })
	}
	for range n(p.PlanChanges.UpgradePerDay * (1 - prog)) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.planChange(c, at, 1, "") })
	}
	for range n(p.PlanChanges.DowngradePerDay * (1 + p.Churn.DowngradeBoost*prog)) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.planChange(c, at, -1, "") })
	}
	for range n(p.Updates.PerDay) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.customerUpdate(c, at) })
	}
	for range n(p.Surveys.NPSPerDay) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.survey(c, at, "survey", "nps", events.EventRef{}, 0) })
	}
	for range n(p.Offers.TelesalesPerDay) {
		g.schedule(c, g.timeIn(r, d0, d1), func(at time.Time) { g.telesales(c, at) })
	}
}

// hourIn draws a time within a span of hours of the day starting at d0.
func (g *Generator) hourIn(r *rand.Rand, d0 time.Time, span [2]float64) time.Time {
	y, m, d := d0.Date()
	mid := time.Date(y, m, d, 0, 0, 0, 0, g.loc)
	t := mid.Add(hours(span[0] + r.Float64()*(span[1]-span[0]))).Truncate(time.Second)
	if t.Before(d0) {
		t = d0
	}
	return t
}

// endOfDay books the day's spend and draws tomorrow's drift and sudden departures.
func (g *Generator) endOfDay(c *customer, d0, d1 time.Time) {
	p, r := g.p, c.r
	lo := d0
	if c.registeredAt.After(lo) {
		lo = c.registeredAt
	}
	frac := float64(d1.Sub(lo)) / float64(day)
	spend := g.dailySpend(c, lo) * meanOneNoise(r, p.Recharge.DailyNoiseSigma) * frac
	if c.prepaid {
		c.balance -= spend
	} else {
		c.monthSpend += spend
	}
	c.bad *= math.Exp2(-1 / p.Churn.BadExperienceHalfLifeDays)
	c.prev, c.cur = c.cur, dayEffect{}
	c.cur.reset()
	if c.leaving {
		return
	}
	quiet := c.drift.start.IsZero() || (!c.drift.recoverEnd.IsZero() && !d1.Before(c.drift.recoverEnd))
	if quiet {
		h := p.Churn.DriftPerMonth / daysPerMonth * (1 + p.Churn.BadExperienceFactor*c.bad)
		if f, ok := p.Churn.Propensity[c.segment]; ok {
			h *= f
		}
		if c.prepaid {
			h *= p.Churn.PrepaidPropensity
		}
		if bernoulli(r, h) {
			g.startDrift(c, d1.Add(hours(24*r.Float64())), between(r, p.Churn.DriftDays))
			return
		}
	}
	if bernoulli(r, p.Churn.SuddenPerMonth/daysPerMonth) {
		reason := g.sudden.pick(r)
		at := g.timeIn(r, d1, d1.Add(day))
		c.leaving = true
		c.drift = driftState{outcome: "sudden_" + reason}
		if reason == "port_out" {
			g.later(c, at, func(at time.Time) { g.portOut(c, at) })
			return
		}
		g.later(c, at, func(at time.Time) { g.terminate(c, at, reason, "termination") })
	}
}

// startDrift makes the customer start drifting at start, for days days.
func (g *Generator) startDrift(c *customer, start time.Time, days float64) {
	c.drift = driftState{start: start, end: start.Add(time.Duration(days * float64(day))), outcome: g.driftOutcome.pick(c.r)}
	if c.drift.outcome != "recover" {
		c.leaving = true
	}
	g.later(c, c.drift.end, func(at time.Time) { g.endDrift(c, at) })
}

// endDrift is where a drift leads: back to normal, a port-out, or a termination.
func (g *Generator) endDrift(c *customer, at time.Time) {
	p, r := g.p, c.r
	switch c.drift.outcome {
	case "recover":
		c.drift.recoverEnd = at.Add(time.Duration(between(r, p.Churn.RecoverDays) * float64(day)))
	case "port_out":
		g.portOut(c, at)
	case "non_payment":
		g.terminate(c, at, "non_payment", "non_payment_termination")
	default:
		g.terminate(c, at, "customer_request", "termination")
	}
}

// portOut requests a port-out; the termination follows unless a retention call
// turns the customer around.
func (g *Generator) portOut(c *customer, at time.Time) {
	p, r := g.p, c.r
	c.retained = false
	if ch, ok := g.route(c, "port_out", at); ok {
		g.emit(c, at, ch, &events.PortOutRequested{RequestID: g.ref("PO", c), TargetOperator: g.operators.pick(r), Reason: g.portReasons.pick(r)})
	}
	if bernoulli(r, p.Churn.RetentionCallShare) {
		g.schedule(c, at.Add(hours(2+r.Float64()*28)), func(at time.Time) { g.retentionCall(c, at) })
	}
	end := at.Add(time.Duration(between(r, p.Churn.PortOutDays) * float64(day)))
	g.schedule(c, end, func(at time.Time) {
		if !c.retained {
			g.terminate(c, at, "port_out", "termination")
		}
	})
}

// terminate ends the subscription.
func (g *Generator) terminate(c *customer, at time.Time, reason, kind string) {
	if ch, ok := g.route(c, kind, at); ok {
		eff := at.Add(-time.Duration(c.r.Int64N(int64(2 * time.Hour)))).Truncate(time.Second)
		g.emit(c, at, ch, &events.SubscriptionTerminated{Reason: reason, EffectiveAt: eff})
	}
	if c.active {
		g.activeN--
	}
	c.terminated, c.active, c.terminatedAt = true, false, at
}

// usage publishes the summary of the day containing dayAt.
func (g *Generator) usage(c *customer, at, dayAt time.Time) {
	ch, ok := g.route(c, "usage", at)
	if !ok {
		return
	}
	r, u := c.r, g.p.Usage
	y, m, d := dayAt.Date()
	d0 := time.Date(y, m, d, 0, 0, 0, 0, g.loc)
	frac := 1.0
	if c.registeredAt.After(d0) {
		frac = float64(d0.Add(day).Sub(c.registeredAt)) / float64(day)
	}
	eng := g.engagement(c, d0.Add(12*time.Hour))
	base := c.usageF * eng * frac
	voice := math.Round(u.VoiceMinutesPerMonth / daysPerMonth * base * meanOneNoise(r, u.DailySigma))
	calls := 0.0
	if voice > 0 {
		calls = math.Max(1, math.Round(voice/u.MinutesPerCall*meanOneNoise(r, 0.3)))
	}
	dropped := math.Min(calls, float64(poisson(r, calls*u.DroppedCallRate*c.prev.dropF)))
	week := (7 - 2*u.WeekendFactor) / 5
	if wd := d0.Weekday(); wd == time.Saturday || wd == time.Sunday {
		week = u.WeekendFactor
	}
	data := u.DataGBPerMonth * 1024 / daysPerMonth * base * week * c.prev.dataF * meanOneNoise(r, u.DailySigma)
	sms := poisson(r, u.SMSPerMonth/daysPerMonth*frac*eng)
	if dropped >= 3 && dropped > 0.05*calls {
		c.bad += 0.2
	}
	date := g.date(d0)
	g.emit(c, at, ch, &events.UsageSummarized{PeriodStart: date, PeriodEnd: date, VoiceMinutes: int64(voice),
		DataMB: math.Round(data*10) / 10, SMS: int64(sms), Calls: int64(calls), DroppedCalls: int64(dropped)})
}

// rechargeAmount is the round amount a prepaid customer tops up with now.
func (g *Generator) rechargeAmount(c *customer, at time.Time) int {
	p := g.p
	target := g.dailySpend(c, at) * daysPerMonth * between(c.r, p.Recharge.CoverMonths) * (1 - p.Churn.RechargeAmountDrop*c.progress(at))
	best, bestD := p.Recharge.AmountsCNY[0], math.Inf(1)
	for _, a := range p.Recharge.AmountsCNY {
		if d := math.Abs(math.Log(float64(a) / target)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

// recharge tops up a prepaid balance.
func (g *Generator) recharge(c *customer, at time.Time) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "recharge", at)
	amount := g.rechargeAmount(c, at)
	c.balance += float64(amount)
	if !ok {
		return
	}
	paid := events.CNY(int64(amount) * 100)
	pl := &events.RechargeCompleted{RechargeID: g.ref("RC", c), Amount: paid, Credited: paid, Method: g.rechargeM.pick(r)}
	switch ch {
	case storeChannel:
		store, staff, end := g.visit(c, at, "payment", "")
		pl.StoreID, pl.StaffID, pl.Method = store, staff, g.storeM.pick(r)
		at = end.Add(-20 * time.Second)
	case dealerChannel:
		pl.Method = g.storeM.pick(r)
	}
	ref := g.emit(c, at, ch, pl)
	g.maybeDuplicate(c, at, ch, pl)
	if bernoulli(r, p.Corrections.ReversalShare) {
		when := at.Add(hours(between(r, p.Corrections.ReversalHours))).Truncate(time.Second)
		g.schedule(c, when, func(at time.Time) { g.reverse(c, at, ref, amount) })
	}
}

// reverse takes a recharge back, in full or in part.
func (g *Generator) reverse(c *customer, at time.Time, rc events.EventRef, amount int) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "recharge_reversal", at)
	if !ok {
		return
	}
	back := int64(amount) * 100
	if bernoulli(r, p.Corrections.PartialReversalShr) && amount >= 2 {
		back = int64(amount/2) * 100
	}
	c.balance -= float64(back) / 100
	g.emit(c, at, ch, &events.RechargeReversed{Recharge: rc, Amount: events.CNY(back), Reason: g.reversal.pick(r)})
}

// bill issues a postpaid customer's bill for the month starting at period.
func (g *Generator) bill(c *customer, at, period time.Time) {
	p, r := g.p, c.r
	amount := fen(c.monthSpend * meanOneNoise(r, p.Billing.NoiseSigma))
	c.monthSpend = 0
	ch, ok := g.route(c, "bill", at)
	if !ok {
		return
	}
	id := fmt.Sprintf("B%s-%d-%s", period.Format("200601"), g.seed, c.id[1:])
	due := time.Date(at.Year(), at.Month(), p.Billing.DueDay, 23, 59, 59, 0, g.loc)
	ref := g.emit(c, at, ch, &events.BillIssued{BillID: id, Period: period.Format("2006-01"), Amount: events.CNY(amount), DueDate: g.date(due)})
	c.lastBill, c.lastBillAt = id, at
	prog := c.progress(at)
	if amount > 0 && !(c.drift.outcome == "non_payment" && prog > 0.5) {
		delay := p.Billing.PayDelayDays.draw(r) + p.Churn.LatePayDays*prog
		if c.autoDebit {
			delay = 1 + 2*r.Float64()
		}
		payDay := at.Add(time.Duration(delay * float64(day)))
		g.schedule(c, g.timeIn(r, payDay, payDay.Add(day)), func(at time.Time) { g.payBill(c, at, id, amount, due) })
	}
	if bernoulli(r, p.Billing.AdjustmentPerBill) {
		when := at.Add(time.Duration((1 + 9*r.Float64()) * float64(day)))
		g.schedule(c, g.timeIn(r, when, when.Add(day)), func(at time.Time) { g.adjustBill(c, at, id, amount, ref) })
	}
	if bernoulli(r, p.Billing.BillingCallShare) {
		when := at.Add(time.Duration(5 * r.Float64() * float64(day)))
		g.schedule(c, g.timeIn(r, when, when.Add(day)), func(at time.Time) { g.inboundCall(c, at, "billing", false) })
	}
}

// payBill pays a bill in full.
func (g *Generator) payBill(c *customer, at time.Time, bill string, amount int64, due time.Time) {
	kind := "bill_payment"
	if c.autoDebit {
		kind = "auto_debit"
	}
	ch, ok := g.route(c, kind, at)
	if !ok {
		return
	}
	late := at.After(due)
	pl := &events.BillPaid{BillID: bill, Amount: events.CNY(amount), Method: g.payM.pick(c.r), PaidLate: &late}
	if c.autoDebit {
		pl.Method = "auto_debit"
	}
	if ch == storeChannel {
		store, staff, end := g.visit(c, at, "payment", "")
		pl.StoreID, pl.StaffID, pl.Method = store, staff, g.storeM.pick(c.r)
		if pl.Method == "auto_debit" {
			pl.Method = "cash"
		}
		at = end.Add(-20 * time.Second)
	}
	g.emit(c, at, ch, pl)
	g.maybeDuplicate(c, at, ch, pl)
}

// adjustBill credits (or, for a late fee, charges) an issued bill.
func (g *Generator) adjustBill(c *customer, at time.Time, bill string, amount int64, issued events.EventRef) {
	ch, ok := g.route(c, "bill_adjustment", at)
	if !ok {
		return
	}
	r := c.r
	reason := g.adjustment.pick(r)
	var adj int64
	if reason == "late_fee" {
		adj = max(100, amount/50)
	} else {
		adj = -max(100, int64(float64(amount)*(0.05+0.25*r.Float64())))
	}
	g.emit(c, at, ch, &events.BillAdjusted{BillID: bill, Amount: events.CNY(adj), Reason: reason, RefersTo: issued})
}
