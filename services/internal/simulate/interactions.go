package simulate

import (
	"math"
	"strconv"
	"time"

	"github.com/touchstream/touchstream/events"
)

// visit emits a counter service at the customer's store (sometimes another of the
// region's) and returns the store, the staff member and when the ticket closed. The
// event time is when the customer was called to the counter.
func (g *Generator) visit(c *customer, at time.Time, purpose, staff string) (store, staffOut string, end time.Time) {
	p, r := g.p, c.r
	store = c.store
	if r.Float64() < 0.2 {
		reg := &p.Population.Regions[c.region]
		store = storeID(reg, 1+r.IntN(reg.Stores))
	}
	if staff == "" {
		staff = staffID(store, 1+r.IntN(p.Stores.StaffPerStore))
	}
	dur := int(math.Round(p.Stores.DurationSeconds.draw(r)))
	pl := &events.StoreVisited{StoreID: store, StaffID: staff, Purpose: purpose, DurationSeconds: dur}
	ch, ok := g.fit(storeChannel, at, "store.visited")
	end = at.Add(time.Duration(dur) * time.Second)
	if !ok {
		return store, staff, end
	}
	ref := g.emit(c, at, ch, pl)
	if purpose == "inquiry" || purpose == "other" || purpose == "sim_swap" || purpose == "purchase" {
		g.maybeDuplicate(c, at, ch, pl)
	}
	if bernoulli(r, p.Surveys.AfterVisitShare) {
		g.schedule(c, end.Add(hours(0.5+2*r.Float64())).Truncate(time.Second), func(at time.Time) {
			g.survey(c, at, "survey", "csat", ref, 0)
		})
	}
	return store, staff, end
}

// storeVisit is a visit for its own sake, where the staff may present an offer.
func (g *Generator) storeVisit(c *customer, at time.Time) {
	p, r := g.p, c.r
	purpose := g.purposes.pick(r)
	_, staff, end := g.visit(c, at, purpose, "")
	if !bernoulli(r, p.Offers.StoreOfferShare) {
		return
	}
	ch, ok := g.fit(storeChannel, at, "offer.presented", "offer.accepted")
	if !ok {
		return
	}
	offer := g.ref("OF", c)
	kind := g.offerKinds.pick(r)
	mid := at.Add(end.Sub(at) / 2)
	g.emit(c, mid, ch, &events.OfferPresented{OfferID: offer, Kind: kind, StaffID: staff})
	if bernoulli(r, p.Offers.StoreAcceptShare) {
		g.emit(c, end.Add(-10*time.Second), ch, &events.OfferAccepted{OfferID: offer})
		if kind == "plan_upgrade" {
			g.planChange(c, end.Add(-5*time.Second), 1, storeChannel)
		}
	}
}

// callResult is what became of a call.
type callResult struct {
	ref      events.EventRef
	answered bool
	agent    string
	end      time.Time
}

// inboundCall is a call to the call center. queue "" draws one from the mix (VIP
// customers have their own); escalate marks a call that registers a complaint.
func (g *Generator) inboundCall(c *customer, at time.Time, queue string, escalate bool) callResult {
	p, r := g.p, c.r
	if queue == "" {
		queue = g.queues.pick(r)
	}
	if c.enterprise || c.value >= p.Calls.VIPValueCNY {
		queue = "vip"
	}
	q := p.Calls.Queues[queue]
	cong := p.Calls.HourCongestion[at.Hour()]
	wait := r.ExpFloat64() * q.WaitMeanSeconds * cong
	patience := r.ExpFloat64() * q.PatienceMeanSeconds
	pl := &events.CallCompleted{CallID: g.ref("CL", c), Direction: "inbound", Queue: queue}
	res := callResult{}
	if patience < wait {
		pl.WaitSeconds = int(math.Round(patience))
		pl.Outcome = "abandoned"
		if bernoulli(r, p.Calls.CallbackShare) {
			pl.Outcome = "callback"
		}
		c.bad += 0.3
	} else {
		pl.WaitSeconds = int(math.Round(wait))
		pl.Answered = true
		pl.HandlingSeconds = int(math.Round(q.HandlingSeconds.draw(r)))
		pl.Outcome = g.outcomes[queue].pick(r)
		if escalate {
			pl.Outcome = "escalated"
		}
		res.agent = agentID(1 + r.IntN(p.Calls.Agents))
		pl.AgentID = res.agent
		res.answered = true
		if pl.WaitSeconds > 60 {
			c.bad += 0.1
		}
	}
	res.end = at.Add(time.Duration(pl.WaitSeconds+pl.HandlingSeconds) * time.Second)
	ch, ok := g.route(c, "call", at)
	if !ok {
		return res
	}
	res.ref = g.emit(c, at, ch, pl)
	if !escalate {
		g.maybeDuplicate(c, at, ch, pl)
	}
	if res.answered && bernoulli(r, p.Surveys.AfterCallShare) {
		penalty := 0.0
		if pl.WaitSeconds > 60 {
			penalty = 0.1
		}
		ref := res.ref
		g.schedule(c, res.end.Add(20*time.Second), func(at time.Time) { g.survey(c, at, "ivr_survey", "csat", ref, penalty) })
	}
	return res
}

// survey is an answered NPS or CSAT survey, scored from the customer's sentiment.
func (g *Generator) survey(c *customer, at time.Time, kind, surveyKind string, refersTo events.EventRef, penalty float64) {
	p, r := g.p, c.r
	ch, ok := g.route(c, kind, at)
	if !ok {
		return
	}
	s := g.sentiment(c, at) - penalty + p.Surveys.ScoreNoise*r.NormFloat64()
	pl := &events.SurveyAnswered{SurveyID: g.ref("SV", c), Kind: surveyKind, RefersTo: refersTo}
	if surveyKind == "nps" {
		pl.Score = int(clamp(math.Round(10*s), 0, 10))
	} else {
		pl.Score = csat(s)
	}
	if bernoulli(r, p.Surveys.CommentShare) {
		pl.Comment = events.Clear(pick(r, surveyComments[s >= 0.6]))
	}
	g.emit(c, at, ch, pl)
}

func csat(s float64) int { return int(clamp(math.Round(1+4*s), 1, 5)) }

// complaint registers a complaint through the complaint channel mix and schedules its
// resolution against the promised deadline.
func (g *Generator) complaint(c *customer, at time.Time, category string) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "complaint", at)
	if !ok {
		return
	}
	pl := &events.ComplaintOpened{ComplaintID: g.ref("CP", c), Category: category}
	opened := at
	switch ch {
	case "callcenter":
		queue := "care"
		switch category {
		case "network":
			queue = "technical"
		case "billing":
			queue = "billing"
		}
		call := g.inboundCall(c, at, queue, true)
		if !call.answered {
			// The caller gave up: they will try again.
			g.schedule(c, call.end.Add(hours(0.2+3*r.Float64())).Truncate(time.Second), func(at time.Time) { g.complaint(c, at, category) })
			return
		}
		pl.AgentID = call.agent
		opened = call.end.Add(-30 * time.Second)
	case storeChannel:
		store, _, end := g.visit(c, at, "complaint", "")
		pl.StoreID = store
		opened = end.Add(-30 * time.Second)
	}
	sevName := g.severities.pick(r)
	sev := p.Complaints.Severities[sevName]
	promised := sev.PromisedHours
	if c.enterprise {
		promised *= p.Complaints.EnterpriseDeadlineFactor
	}
	pl.Severity = sevName
	pl.PromisedBy = opened.Add(hours(promised)).Truncate(time.Second)
	if bernoulli(r, p.Complaints.DescriptionShare) {
		pl.Description = events.Clear(pick(r, complaintTexts[category]))
	}
	g.emit(c, opened, ch, pl)
	c.bad += 0.5
	resolved := opened.Add(hours(promised * sev.ResolveShare.draw(r))).Truncate(time.Second)
	if !resolved.After(opened) {
		resolved = opened.Add(time.Minute)
	}
	id, store, agent, due := pl.ComplaintID, pl.StoreID, pl.AgentID, pl.PromisedBy
	g.schedule(c, resolved, func(at time.Time) { g.resolve(c, at, ch, id, store, agent, due) })
}

// resolve closes a complaint, with the customer's satisfaction when asked and a
// compensation (credited to the bill of a postpaid customer) when granted.
func (g *Generator) resolve(c *customer, at time.Time, owner, id, store, agent string, due time.Time) {
	p, r := g.p, c.r
	ch, ok := g.fit(owner, at, "complaint.resolved")
	if !ok {
		return
	}
	late := at.After(due)
	res := g.resolutions.pick(r)
	if c.enterprise && late && res != "withdrawn" {
		// A missed SLA deadline is compensated.
		res = "compensated"
	}
	pl := &events.ComplaintResolved{ComplaintID: id, Resolution: res, StoreID: store, AgentID: agent}
	if owner == "callcenter" {
		pl.AgentID = agentID(1 + r.IntN(p.Calls.Agents))
	}
	if late {
		c.bad += 0.7
	}
	if res == "rejected" {
		c.bad += 0.5
	}
	if bernoulli(r, p.Complaints.SatisfactionAskedShare) {
		s := g.sentiment(c, at) + p.Surveys.ScoreNoise*r.NormFloat64()
		if late {
			s -= 0.25
		}
		switch res {
		case "rejected":
			s -= 0.25
		case "compensated":
			s += 0.1
		}
		pl.Satisfaction = csat(s)
	}
	var comp float64
	if res == "compensated" {
		comp = math.Round(between(r, p.Complaints.CompensationCNY))
		pl.Compensation = events.CNY(fen(comp))
	}
	ref := g.emit(c, at, ch, pl)
	if comp == 0 {
		return
	}
	if c.prepaid {
		c.balance += comp
		return
	}
	if c.lastBill == "" {
		return
	}
	reason := "complaint_compensation"
	if c.enterprise && late {
		reason = "sla_compensation"
	}
	bill := c.lastBill
	g.schedule(c, at.Add(hours(1+47*r.Float64())).Truncate(time.Second), func(at time.Time) {
		if ch, ok := g.route(c, "bill_adjustment", at); ok {
			g.emit(c, at, ch, &events.BillAdjusted{BillID: bill, Amount: events.CNY(-fen(comp)), Reason: reason, RefersTo: ref})
		}
	})
}

// telesales is an outbound sales call with an offer, sometimes accepted.
func (g *Generator) telesales(c *customer, at time.Time) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "call", at)
	if !ok {
		return
	}
	pl := &events.CallCompleted{CallID: g.ref("CL", c), Direction: "outbound", Queue: "telesales",
		WaitSeconds: 3 + r.IntN(28), Outcome: "no_answer"}
	if !bernoulli(r, p.Offers.TelesalesAnswerShare) {
		g.emit(c, at, ch, pl)
		return
	}
	agent := agentID(1 + r.IntN(p.Calls.Agents))
	pl.Answered, pl.AgentID = true, agent
	pl.HandlingSeconds = int(math.Round(p.Calls.Queues["telesales"].HandlingSeconds.draw(r)))
	accept := bernoulli(r, p.Offers.TelesalesAcceptShare)
	pl.Outcome = "declined"
	if accept {
		pl.Outcome = "sale"
	}
	g.emit(c, at, ch, pl)
	offer := g.ref("OF", c)
	kind := g.offerKinds.pick(r)
	mid := at.Add(time.Duration(pl.WaitSeconds+pl.HandlingSeconds/2) * time.Second)
	if och, ok := g.route(c, "offer_presented", mid); ok {
		g.emit(c, mid, och, &events.OfferPresented{OfferID: offer, Kind: kind, StaffID: agent})
	}
	if accept {
		when := mid.Add(hours(0.1 + 12*r.Float64())).Truncate(time.Second)
		g.schedule(c, when, func(at time.Time) { g.acceptOffer(c, at, offer, kind) })
	}
}

// acceptOffer records an accepted offer and what it changes.
func (g *Generator) acceptOffer(c *customer, at time.Time, offer, kind string) {
	ch, ok := g.route(c, "offer_accepted", at)
	if !ok {
		return
	}
	g.emit(c, at, ch, &events.OfferAccepted{OfferID: offer})
	if kind == "plan_upgrade" {
		g.planChange(c, at.Add(time.Minute), 1, "")
	}
}

// retentionCall is the operator's outbound call after a port-out request.
func (g *Generator) retentionCall(c *customer, at time.Time) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "call", at)
	if !ok {
		return
	}
	pl := &events.CallCompleted{CallID: g.ref("CL", c), Direction: "outbound", Queue: "retention",
		WaitSeconds: 3 + r.IntN(28), Outcome: "no_answer"}
	if !bernoulli(r, p.Churn.RetentionAnswerShare) {
		g.emit(c, at, ch, pl)
		return
	}
	agent := agentID(1 + r.IntN(p.Calls.Agents))
	pl.Answered, pl.AgentID = true, agent
	pl.HandlingSeconds = int(math.Round(p.Calls.Queues["retention"].HandlingSeconds.draw(r)))
	won := bernoulli(r, p.Churn.RetentionSuccessShare)
	pl.Outcome = "declined"
	if won {
		pl.Outcome = "retained"
	}
	g.emit(c, at, ch, pl)
	offer := g.ref("OF", c)
	mid := at.Add(time.Duration(pl.WaitSeconds+pl.HandlingSeconds/2) * time.Second)
	if och, ok := g.route(c, "offer_presented", mid); ok {
		g.emit(c, mid, och, &events.OfferPresented{OfferID: offer, Kind: "retention_bundle", StaffID: agent})
	}
	if !won {
		return
	}
	c.retained, c.leaving = true, false
	if !c.drift.start.IsZero() {
		c.drift.retained = true
		c.drift.recoverEnd = at.Add(time.Duration(between(r, p.Churn.RecoverDays) * float64(day)))
		if c.drift.end.After(at) {
			c.drift.end = at
		}
	}
	when := mid.Add(hours(0.1 + 6*r.Float64())).Truncate(time.Second)
	g.schedule(c, when, func(at time.Time) { g.acceptOffer(c, at, offer, "retention_bundle") })
}

// deviceChange is a new handset: sold at a store, or seen on the network.
func (g *Generator) deviceChange(c *customer, at time.Time) {
	p, r := g.p, c.r
	ch, ok := g.route(c, "device_change", at)
	if !ok {
		return
	}
	brand := p.Devices.Brands[g.brands.index(r)]
	model := pick(r, brand.Models)
	pl := &events.DeviceChanged{IMEI: events.Clear(imei(r)), Brand: brand.Name, Model: model.Name}
	if ch == storeChannel {
		store, _, end := g.visit(c, at, "device", "")
		pl.StoreID = store
		pl.Price = events.CNY(fen(model.PriceCNY))
		at = end.Add(-20 * time.Second)
		pl.PurchasedAt = g.date(at)
	} else {
		pl.PurchasedAt = g.date(at.Add(-time.Duration(r.IntN(20)) * day))
	}
	g.emit(c, at, ch, pl)
	g.maybeDuplicate(c, at, ch, pl)
}

// planChange moves the customer one plan up or down; via "" draws the channel.
func (g *Generator) planChange(c *customer, at time.Time, dir int, via string) {
	p, r := g.p, c.r
	to := g.nextPlan(c, dir)
	if to < 0 {
		return
	}
	var ch string
	var ok bool
	if via != "" {
		ch, ok = g.fit(via, at, "plan.changed")
	} else {
		ch, ok = g.route(c, "plan_change", at)
	}
	if !ok {
		c.plan = to
		return
	}
	pl := &events.PlanChanged{From: g.planPayload(c.plan), To: g.planPayload(to), Direction: "upgrade"}
	if dir < 0 {
		pl.Direction = "downgrade"
	}
	if bernoulli(r, p.PlanChanges.NextMonthShare) {
		pl.EffectiveOn = g.date(time.Date(at.Year(), at.Month()+1, 1, 12, 0, 0, 0, g.loc))
	}
	if dir > 0 && !c.prepaid && bernoulli(r, p.Population.ContractShare) {
		c.contractEnd = at.AddDate(0, p.Population.ContractMonths, 0)
		pl.ContractEnd = g.date(c.contractEnd)
	}
	if ch == storeChannel && via == "" {
		store, staff, end := g.visit(c, at, "plan_change", "")
		pl.StoreID, pl.StaffID = store, staff
		at = end.Add(-20 * time.Second)
	}
	c.plan = to
	g.emit(c, at, ch, pl)
}

// customerUpdate changes contact or contract data.
func (g *Generator) customerUpdate(c *customer, at time.Time) {
	r := c.r
	ch, ok := g.route(c, "customer_update", at)
	if !ok {
		return
	}
	reg := &g.p.Population.Regions[c.region]
	pl := &events.CustomerUpdated{}
	switch u := r.Float64(); {
	case u < 0.5:
		c.ident.address = address(r, reg, c.enterprise)
		pl.Address = events.Clear(c.ident.address)
	case u < 0.65 && !c.contractEnd.IsZero():
		c.contractEnd = c.contractEnd.AddDate(0, 12, 0)
		pl.ContractEnd = g.date(c.contractEnd)
	case u < 0.8 && c.segment == "youth":
		c.segment = "consumer"
		pl.Segment = c.segment
	case c.enterprise:
		c.ident.address = address(r, reg, true)
		pl.Address = events.Clear(c.ident.address)
	default:
		// A misspelt name corrected.
		c.ident.name = personName(r, r.IntN(2) == 0)
		pl.Name = events.Clear(c.ident.name)
	}
	if ch == storeChannel {
		_, _, end := g.visit(c, at, "other", "")
		at = end.Add(-20 * time.Second)
	}
	g.emit(c, at, ch, pl)
}

// maybeDuplicate sometimes posts an event twice, under a new id, and retracts the
// duplicate later from the same channel: the channel's own correction.
func (g *Generator) maybeDuplicate(c *customer, at time.Time, ch string, pl events.Payload) {
	p, r := g.p, c.r
	if !bernoulli(r, p.Corrections.RetractionShare) || !g.channels[ch].Allows(events.TypeEventRetracted) {
		return
	}
	dupAt := at.Add(time.Duration(1+r.IntN(600)) * time.Second)
	dup := g.emit(c, dupAt, ch, pl)
	reason := pick(r, p.Corrections.RetractionReasons)
	when := dupAt.Add(hours(between(r, p.Corrections.RetractionHours))).Truncate(time.Second)
	g.schedule(c, when, func(at time.Time) {
		g.emit(c, at, ch, &events.EventRetracted{Target: dup, Reason: reason})
	})
}

// acquire registers the day's new customers.
func (g *Generator) acquire(d0, d1 time.Time) {
	rate := g.p.Population.AcquisitionPerMonth * float64(g.initial) / daysPerMonth
	for range poisson(g.acq, rate*float64(d1.Sub(d0))/float64(day)) {
		g.addCustomer(len(g.customers), g.timeIn(g.acq, d0, d1), false)
	}
}

// networkIncidents draws the day's incidents of every region and the customers they
// affect.
func (g *Generator) networkIncidents(d0, d1 time.Time) {
	p := g.p
	in := p.Incidents
	for ri := range p.Population.Regions {
		reg := &p.Population.Regions[ri]
		for range poisson(g.inc, in.PerRegionPerDay*float64(d1.Sub(d0))/float64(day)) {
			g.incidents++
			start := d0.Add(time.Duration(g.inc.Int64N(int64(d1.Sub(d0))))).Truncate(time.Second)
			end := start.Add(time.Duration(in.DurationMinutes.draw(g.inc) * float64(time.Minute))).Truncate(time.Second)
			if !end.After(start) {
				end = start.Add(time.Minute)
			}
			inc := &events.NetworkIncident{IncidentID: g.ref2("NI", reg.ID, g.incidents), Kind: g.incidentKinds.pick(g.inc),
				Severity: g.incidentSev.pick(g.inc), Region: reg.ID, StartedAt: start}
			share := between(g.inc, in.AffectedShare)
			for _, c := range g.customers {
				if c.region != ri || !c.active || !c.registeredAt.Before(start) || g.inc.Float64() >= share {
					continue
				}
				g.affect(c, inc, end)
			}
		}
	}
}

func (g *Generator) ref2(prefix, region string, n int) string {
	return prefix + "-" + region + "-" + strconv.FormatUint(g.seed, 10) + "-" + strconv.Itoa(n)
}

// affect makes an incident felt by a customer: reported at its start and end, more
// dropped calls, less data in an outage, and sometimes a call or a complaint.
func (g *Generator) affect(c *customer, inc *events.NetworkIncident, end time.Time) {
	p, r := g.p, c.r
	in := p.Incidents
	delay := func() time.Duration { return time.Duration(r.Float64() * in.ReportDelayMinutes * float64(time.Minute)) }
	started := *inc
	g.later(c, inc.StartedAt.Add(delay()).Truncate(time.Second), func(at time.Time) {
		if ch, ok := g.route(c, "network_incident", at); ok {
			g.emit(c, at, ch, &started)
		}
	})
	ended := *inc
	ended.EndedAt = end
	g.later(c, end.Add(delay()).Truncate(time.Second), func(at time.Time) {
		if ch, ok := g.route(c, "network_incident", at); ok {
			g.emit(c, at, ch, &ended)
		}
	})
	switch inc.Kind {
	case "outage":
		c.cur.dataF *= in.OutageDataFactor
		c.cur.dropF = math.Max(c.cur.dropF, in.DroppedCallFactor)
		c.bad += 0.5
	case "dropped_calls_spike":
		c.cur.dropF = math.Max(c.cur.dropF, in.DroppedCallFactor)
		c.bad += 0.3
	default:
		c.cur.dropF = math.Max(c.cur.dropF, math.Sqrt(in.DroppedCallFactor))
		c.bad += 0.2
	}
	if bernoulli(r, in.CallShare) {
		g.later(c, inc.StartedAt.Add(time.Duration((5+175*r.Float64())*float64(time.Minute))).Truncate(time.Second),
			func(at time.Time) { g.inboundCall(c, at, "technical", false) })
	}
	if bernoulli(r, in.ComplaintShare) {
		g.later(c, inc.StartedAt.Add(time.Duration((0.5+47.5*r.Float64())*float64(time.Hour))).Truncate(time.Second),
			func(at time.Time) { g.complaint(c, at, "network") })
	}
}
