package simulate

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Interaction kinds routed by the channel mix, and the event types each produces on
// its channel. An interaction routed to the store channel ("store") is also a counter
// visit: a store.visited precedes it.
var kindTypes = map[string][]string{
	"registration":            {"customer.registered"},
	"customer_update":         {"customer.updated"},
	"recharge":                {"recharge.completed"},
	"recharge_reversal":       {"recharge.reversed"},
	"bill":                    {"bill.issued"},
	"bill_payment":            {"bill.paid"},
	"auto_debit":              {"bill.paid"},
	"bill_adjustment":         {"bill.adjusted"},
	"usage":                   {"usage.summarized"},
	"network_incident":        {"network.incident"},
	"call":                    {"call.completed"},
	"ivr_survey":              {"survey.answered"},
	"store_visit":             {"store.visited"},
	"plan_change":             {"plan.changed"},
	"complaint":               {"complaint.opened", "complaint.resolved"},
	"device_change":           {"device.changed"},
	"survey":                  {"survey.answered"},
	"offer_presented":         {"offer.presented"},
	"offer_accepted":          {"offer.accepted"},
	"port_out":                {"number.port_out_requested"},
	"termination":             {"subscription.terminated"},
	"non_payment_termination": {"subscription.terminated"},
}

// storeChannel is the channel of business hall counters: interactions routed to it
// come with a store.visited, and counter offers are made and accepted on it.
const storeChannel = "store"

// Kinds lists the interaction kinds of the channel mix.
func Kinds() []string {
	ks := make([]string, 0, len(kindTypes))
	for k := range kindTypes {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

var (
	refPattern    = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	digitsPattern = regexp.MustCompile(`^[0-9]+$`)
)

// checker collects validation errors, each naming its field.
type checker struct{ errs []error }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (c *checker) share(field string, v float64) {
	if !(v >= 0 && v <= 1) {
		c.add(field, "%v must be between 0 and 1", v)
	}
}

func (c *checker) nonNegative(field string, v float64) {
	if !(v >= 0) || math.IsInf(v, 0) {
		c.add(field, "%v must be zero or more", v)
	}
}

func (c *checker) positive(field string, v float64) {
	if !(v > 0) || math.IsInf(v, 0) {
		c.add(field, "%v must be positive", v)
	}
}

func (c *checker) span(field string, r [2]float64, lo float64) {
	if !(r[0] >= lo && r[1] >= r[0]) || math.IsInf(r[1], 0) {
		c.add(field, "%v must be [min, max] with %v <= min <= max", r, lo)
	}
}

func (c *checker) lognormal(field string, l Lognormal) {
	c.positive(field+".median", l.Median)
	if !(l.Sigma >= 0 && l.Sigma <= 5) {
		c.add(field+".sigma", "%v must be between 0 and 5", l.Sigma)
	}
	if !(l.Min >= 0 && l.Max >= l.Min && l.Max > 0) {
		c.add(field, "min %v and max %v: want 0 <= min <= max, max > 0", l.Min, l.Max)
	}
}

// weights checks a weight map: known keys (when allowed is not nil), weights of zero
// or more, some positive.
func (c *checker) weights(field string, m map[string]float64, allowed []string) {
	if len(m) == 0 {
		c.add(field, "at least one weight is required")
		return
	}
	sum := 0.0
	for _, k := range slices.Sorted(mapKeys(m)) {
		w := m[k]
		if allowed != nil && !slices.Contains(allowed, k) {
			c.add(field+"."+k, "unknown key: want one of %s", strings.Join(allowed, ", "))
		}
		if !(w >= 0) || math.IsInf(w, 0) {
			c.add(field+"."+k, "weight %v must be zero or more", w)
		}
		sum += w
	}
	if !(sum > 0) {
		c.add(field, "weights must not all be zero")
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Enumerations of the contract the parameters choose from.
var (
	individualSegments = []string{"consumer", "youth", "senior"}
	enterpriseSegments = []string{"sme", "government", "enterprise"}
	rechargeMethods    = []string{"cash", "bank_card", "wechat_pay", "alipay", "voucher", "auto_debit"}
	paymentMethods     = []string{"cash", "bank_card", "wechat_pay", "alipay", "auto_debit", "bank_transfer", "voucher"}
	adjustmentReasons  = []string{"billing_error", "goodwill", "promotion", "dispute", "late_fee", "other"}
	inboundQueues      = []string{"care", "billing", "technical"}
	allQueues          = []string{"care", "billing", "technical", "retention", "telesales", "vip"}
	answeredOutcomes   = []string{"resolved", "escalated", "callback", "info", "sale", "retained", "declined"}
	storePurposes      = []string{"inquiry", "purchase", "sim_swap", "other"}
	complaintCats      = []string{"network", "billing", "service", "product", "fraud", "other"}
	severities         = []string{"low", "medium", "high", "critical"}
	resolutions        = []string{"resolved", "rejected", "withdrawn", "compensated"}
	incidentKinds      = []string{"outage", "degradation", "dropped_calls_spike"}
	offerKinds         = []string{"discount", "data_bonus", "device", "plan_upgrade", "points", "retention_bundle"}
	reversalReasons    = []string{"duplicate", "payment_failed", "customer_request", "fraud", "operator_error", "other"}
	driftOutcomes      = []string{"recover", "port_out", "customer_request", "non_payment"}
	targetOperators    = []string{"cmcc", "unicom", "telecom", "broadnet", "other"}
	portOutReasons     = []string{"price", "network_quality", "service", "relocation", "family_bundle", "other"}
	suddenReasons      = []string{"port_out", "customer_request", "deceased", "fraud", "other"}
)

// Validate checks every parameter. The error joins one error per problem, each
// naming its field by its JSON path.
func (p *Params) Validate() error {
	var c checker
	if p.Version != ParamsVersion {
		c.add("version", "%d is not supported: this simulator reads version %d", p.Version, ParamsVersion)
	}
	if p.Name == "" {
		c.add("name", "required")
	}
	if _, err := p.Location(); err != nil {
		c.add("utc_offset", "%q: want a fixed offset like \"+08:00\"", p.UTCOffset)
	}
	cal := p.Calibration
	c.positive("calibration.arpu_cny", cal.ARPUCNY)
	c.share("calibration.top20_revenue_share", cal.Top20RevenueShare)
	c.positive("calibration.voice_minutes_per_month", cal.VoiceMinutesPerMonth)
	c.positive("calibration.data_gb_per_month", cal.DataGBPerMonth)
	c.share("calibration.answered_in_20s_share", cal.AnsweredIn20sShare)
	c.positive("calibration.big_customer_cny", cal.BigCustomerCNY)
	for _, name := range slices.Sorted(mapKeys(p.DevAPIKeys)) {
		if k := p.DevAPIKeys[name]; k == "" || strings.ContainsAny(k, " \t\r\n") {
			c.add("dev_api_keys."+name, "must be a non-empty key without spaces")
		}
	}
	p.validatePopulation(&c)
	p.validateValue(&c)
	p.validateMix(&c)
	if len(p.HourWeights) != 24 {
		c.add("hour_weights", "want 24 weights (hours 0-23), got %d", len(p.HourWeights))
	} else {
		c.weights("hour_weights", sliceWeights(p.HourWeights), nil)
	}
	p.validateBehaviour(&c)
	p.validateChurn(&c)
	return errors.Join(c.errs...)
}

func sliceWeights(ws []float64) map[string]float64 {
	m := make(map[string]float64, len(ws))
	for i, w := range ws {
		m[fmt.Sprintf("[%d]", i)] = w
	}
	return m
}

func (p *Params) validatePopulation(c *checker) {
	pop := p.Population
	if pop.Customers < 1 || pop.Customers > 10_000_000 {
		c.add("population.customers", "%d must be between 1 and 10,000,000", pop.Customers)
	}
	c.share("population.prepaid_share", pop.PrepaidShare)
	c.share("population.enterprise_share", pop.EnterpriseShare)
	if len(pop.Regions) == 0 {
		c.add("population.regions", "at least one region is required")
	}
	ids := map[string]bool{}
	rw := map[string]float64{}
	for i, r := range pop.Regions {
		at := fmt.Sprintf("population.regions[%d]", i)
		if !refPattern.MatchString(r.ID) || len(r.ID) > 24 {
			c.add(at+".id", "%q must be 1-24 characters of [A-Za-z0-9_.:-]", r.ID)
		} else if ids[r.ID] {
			c.add(at+".id", "%q is listed twice", r.ID)
		}
		ids[r.ID] = true
		rw[r.ID] = r.Weight
		if r.Province == "" || r.City == "" {
			c.add(at, "province and city are required")
		}
		if len(r.AreaCode) != 4 || !digitsPattern.MatchString(r.AreaCode) {
			c.add(at+".area_code", "%q must be 4 digits", r.AreaCode)
		}
		if len(r.Districts) == 0 {
			c.add(at+".districts", "at least one district is required")
		}
		if r.Stores < 1 || r.Stores > 999 {
			c.add(at+".stores", "%d must be between 1 and 999", r.Stores)
		}
	}
	if len(pop.Regions) > 0 {
		c.weights("population.regions[].weight", rw, nil)
	}
	c.weights("population.segments.individual", pop.Segments.Individual, individualSegments)
	c.weights("population.segments.enterprise", pop.Segments.Enterprise, enterpriseSegments)
	c.nonNegative("population.initial_registration_hours", pop.InitialRegistrationHours)
	if pop.InitialRegistrationHours > 24*30 {
		c.add("population.initial_registration_hours", "%v must be at most 720", pop.InitialRegistrationHours)
	}
	c.share("population.acquisition_per_month", pop.AcquisitionPerMonth)
	c.share("population.contract_share", pop.ContractShare)
	if pop.ContractMonths < 1 || pop.ContractMonths > 60 {
		c.add("population.contract_months", "%d must be between 1 and 60", pop.ContractMonths)
	}
	c.share("population.dealer_incomplete_share", pop.DealerIncompleteShare)
	c.span("population.dealer_incomplete_fix_days", pop.DealerIncompleteFixDays, 0)
}

func (p *Params) validateValue(c *checker) {
	c.lognormal("value.individual", p.Value.Individual)
	c.lognormal("value.enterprise", p.Value.Enterprise)
	for _, s := range slices.Sorted(mapKeys(p.Value.SegmentFactor)) {
		if !slices.Contains(individualSegments, s) && !slices.Contains(enterpriseSegments, s) {
			c.add("value.segment_factor."+s, "unknown segment")
		}
		c.positive("value.segment_factor."+s, p.Value.SegmentFactor[s])
	}
	c.positive("value.postpaid_factor", p.Value.PostpaidFactor)
	if !(p.Value.PlanFeeShare > 0 && p.Value.PlanFeeShare <= 1) {
		c.add("value.plan_fee_share", "%v must be in (0, 1]", p.Value.PlanFeeShare)
	}
	kinds := map[string]int{}
	ids := map[string]bool{}
	for i, pl := range p.Plans {
		at := fmt.Sprintf("plans[%d]", i)
		if !refPattern.MatchString(pl.ID) {
			c.add(at+".id", "%q must be 1-64 characters of [A-Za-z0-9_.:-]", pl.ID)
		} else if ids[pl.ID] {
			c.add(at+".id", "%q is listed twice", pl.ID)
		}
		ids[pl.ID] = true
		if pl.Name == "" || len(pl.Name) > 128 {
			c.add(at+".name", "required, at most 128 bytes")
		}
		if pl.Kind != "prepaid" && pl.Kind != "postpaid" {
			c.add(at+".kind", "%q must be prepaid or postpaid", pl.Kind)
		}
		c.positive(at+".monthly_fee_cny", pl.MonthlyFeeCNY)
		kinds[pl.Kind]++
	}
	if kinds["prepaid"] < 2 || kinds["postpaid"] < 2 {
		c.add("plans", "at least two prepaid and two postpaid plans are required (for upgrades and downgrades)")
	}
	for i := 1; i < len(p.Plans); i++ {
		a, b := p.Plans[i-1], p.Plans[i]
		if a.Kind == b.Kind && b.MonthlyFeeCNY <= a.MonthlyFeeCNY {
			c.add(fmt.Sprintf("plans[%d].monthly_fee_cny", i), "plans of a kind must be listed by rising fee")
		}
	}
}

func (p *Params) validateMix(c *checker) {
	for _, k := range Kinds() {
		m, ok := p.ChannelMix[k]
		if !ok {
			c.add("channel_mix."+k, "required")
			continue
		}
		c.weights("channel_mix."+k, m, nil)
	}
	for _, k := range slices.Sorted(mapKeys(p.ChannelMix)) {
		if _, ok := kindTypes[k]; !ok {
			c.add("channel_mix."+k, "unknown kind: want one of %s", strings.Join(Kinds(), ", "))
		}
	}
}

func (p *Params) validateBehaviour(c *checker) {
	r := p.Recharge
	if len(r.AmountsCNY) == 0 {
		c.add("recharge.amounts_cny", "at least one amount is required")
	}
	for i, a := range r.AmountsCNY {
		if a < 1 || a > 10000 || (i > 0 && a <= r.AmountsCNY[i-1]) {
			c.add(fmt.Sprintf("recharge.amounts_cny[%d]", i), "%d: amounts must rise, between 1 and 10000", a)
		}
	}
	c.positive("recharge.trigger_days", r.TriggerDays)
	c.span("recharge.cover_months", r.CoverMonths, 0.1)
	c.nonNegative("recharge.daily_noise_sigma", r.DailyNoiseSigma)
	c.weights("recharge.methods", r.Methods, rechargeMethods)
	c.weights("recharge.store_methods", r.StoreMethods, rechargeMethods)

	b := p.Billing
	c.span("billing.issue_hours", b.IssueHours, 0)
	if b.IssueHours[1] >= 24 {
		c.add("billing.issue_hours", "must be within the day (below 24)")
	}
	if b.DueDay < 2 || b.DueDay > 28 {
		c.add("billing.due_day", "%d must be between 2 and 28", b.DueDay)
	}
	c.nonNegative("billing.noise_sigma", b.NoiseSigma)
	c.lognormal("billing.pay_delay_days", b.PayDelayDays)
	c.share("billing.auto_debit_share", b.AutoDebitShare)
	c.weights("billing.methods", b.Methods, paymentMethods)
	c.share("billing.adjustment_per_bill", b.AdjustmentPerBill)
	c.weights("billing.adjustment_reasons", b.AdjustmentReasons, adjustmentReasons)
	c.share("billing.billing_call_share", b.BillingCallShare)

	cl := p.Calls
	c.nonNegative("calls.inbound_per_day", cl.InboundPerDay)
	c.weights("calls.queue_mix", cl.QueueMix, inboundQueues)
	c.positive("calls.vip_value_cny", cl.VIPValueCNY)
	for _, q := range append(slices.Clone(inboundQueues), "vip", "retention", "telesales") {
		qq, ok := cl.Queues[q]
		if !ok {
			c.add("calls.queues."+q, "required")
			continue
		}
		c.positive("calls.queues."+q+".wait_mean_seconds", qq.WaitMeanSeconds)
		c.positive("calls.queues."+q+".patience_mean_seconds", qq.PatienceMeanSeconds)
		c.lognormal("calls.queues."+q+".handling_seconds", qq.HandlingSeconds)
	}
	for _, q := range slices.Sorted(mapKeys(cl.Queues)) {
		if !slices.Contains(allQueues, q) {
			c.add("calls.queues."+q, "unknown queue")
		}
	}
	if len(cl.HourCongestion) != 24 {
		c.add("calls.hour_congestion", "want 24 factors (hours 0-23), got %d", len(cl.HourCongestion))
	}
	for i, f := range cl.HourCongestion {
		c.positive(fmt.Sprintf("calls.hour_congestion[%d]", i), f)
	}
	c.share("calls.callback_share", cl.CallbackShare)
	for _, q := range append(slices.Clone(inboundQueues), "vip") {
		c.weights("calls.outcomes."+q, cl.Outcomes[q], answeredOutcomes)
	}
	if cl.Agents < 1 || cl.Agents > 100000 {
		c.add("calls.agents", "%d must be between 1 and 100000", cl.Agents)
	}

	s := p.Stores
	c.nonNegative("stores.visits_per_day", s.VisitsPerDay)
	c.weights("stores.purposes", s.Purposes, storePurposes)
	c.lognormal("stores.duration_seconds", s.DurationSeconds)
	if s.StaffPerStore < 1 || s.StaffPerStore > 999 {
		c.add("stores.staff_per_store", "%d must be between 1 and 999", s.StaffPerStore)
	}

	cp := p.Complaints
	c.nonNegative("complaints.per_day", cp.PerDay)
	c.weights("complaints.categories", cp.Categories, complaintCats)
	if len(cp.Severities) == 0 {
		c.add("complaints.severities", "required")
	}
	sw := map[string]float64{}
	for _, name := range slices.Sorted(mapKeys(cp.Severities)) {
		sv := cp.Severities[name]
		at := "complaints.severities." + name
		if !slices.Contains(severities, name) {
			c.add(at, "unknown severity")
		}
		sw[name] = sv.Weight
		c.positive(at+".promised_hours", sv.PromisedHours)
		c.lognormal(at+".resolve_share", sv.ResolveShare)
	}
	if len(sw) > 0 {
		c.weights("complaints.severities[].weight", sw, nil)
	}
	if !(cp.EnterpriseDeadlineFactor > 0 && cp.EnterpriseDeadlineFactor <= 1) {
		c.add("complaints.enterprise_deadline_factor", "%v must be in (0, 1]", cp.EnterpriseDeadlineFactor)
	}
	c.weights("complaints.resolutions", cp.Resolutions, resolutions)
	c.share("complaints.satisfaction_asked_share", cp.SatisfactionAskedShare)
	c.span("complaints.compensation_cny", cp.CompensationCNY, 0.01)
	c.share("complaints.description_share", cp.DescriptionShare)

	u := p.Usage
	c.positive("usage.voice_minutes_per_month", u.VoiceMinutesPerMonth)
	c.positive("usage.data_gb_per_month", u.DataGBPerMonth)
	c.nonNegative("usage.sms_per_month", u.SMSPerMonth)
	c.positive("usage.minutes_per_call", u.MinutesPerCall)
	c.share("usage.dropped_call_rate", u.DroppedCallRate)
	c.nonNegative("usage.customer_sigma", u.CustomerSigma)
	if !(u.ValueCorrelation >= -1 && u.ValueCorrelation <= 1) {
		c.add("usage.value_correlation", "%v must be between -1 and 1", u.ValueCorrelation)
	}
	c.nonNegative("usage.daily_sigma", u.DailySigma)
	c.positive("usage.weekend_factor", u.WeekendFactor)
	c.span("usage.publish_hours", u.PublishHours, 0)
	if u.PublishHours[1] >= 24 {
		c.add("usage.publish_hours", "must be within the day (below 24)")
	}

	sv := p.Surveys
	c.share("surveys.after_call_share", sv.AfterCallShare)
	c.share("surveys.after_visit_share", sv.AfterVisitShare)
	c.nonNegative("surveys.nps_per_day", sv.NPSPerDay)
	c.share("surveys.comment_share", sv.CommentShare)
	c.nonNegative("surveys.score_noise", sv.ScoreNoise)

	c.nonNegative("devices.per_day", p.Devices.PerDay)
	if len(p.Devices.Brands) == 0 {
		c.add("devices.brands", "at least one brand is required")
	}
	bw := map[string]float64{}
	for i, br := range p.Devices.Brands {
		at := fmt.Sprintf("devices.brands[%d]", i)
		if br.Name == "" || len(br.Name) > 64 {
			c.add(at+".name", "required, at most 64 bytes")
		}
		bw[br.Name] = br.Weight
		if len(br.Models) == 0 {
			c.add(at+".models", "at least one model is required")
		}
		for j, m := range br.Models {
			if m.Name == "" || len(m.Name) > 128 {
				c.add(fmt.Sprintf("%s.models[%d].name", at, j), "required, at most 128 bytes")
			}
			c.positive(fmt.Sprintf("%s.models[%d].price_cny", at, j), m.PriceCNY)
		}
	}
	if len(bw) > 0 {
		c.weights("devices.brands[].weight", bw, nil)
	}

	c.nonNegative("plan_changes.upgrade_per_day", p.PlanChanges.UpgradePerDay)
	c.nonNegative("plan_changes.downgrade_per_day", p.PlanChanges.DowngradePerDay)
	c.share("plan_changes.next_month_share", p.PlanChanges.NextMonthShare)
	c.nonNegative("customer_updates.per_day", p.Updates.PerDay)

	in := p.Incidents
	c.nonNegative("network_incidents.per_region_per_day", in.PerRegionPerDay)
	c.weights("network_incidents.kinds", in.Kinds, incidentKinds)
	c.weights("network_incidents.severities", in.Severities, severities)
	c.lognormal("network_incidents.duration_minutes", in.DurationMinutes)
	c.span("network_incidents.affected_share", in.AffectedShare, 0)
	if in.AffectedShare[1] > 1 {
		c.add("network_incidents.affected_share", "must be at most 1")
	}
	c.nonNegative("network_incidents.report_delay_minutes", in.ReportDelayMinutes)
	c.positive("network_incidents.dropped_call_factor", in.DroppedCallFactor)
	c.share("network_incidents.outage_data_factor", in.OutageDataFactor)
	c.share("network_incidents.call_share", in.CallShare)
	c.share("network_incidents.complaint_share", in.ComplaintShare)

	o := p.Offers
	c.nonNegative("offers.telesales_per_day", o.TelesalesPerDay)
	c.share("offers.telesales_answer_share", o.TelesalesAnswerShare)
	c.share("offers.telesales_accept_share", o.TelesalesAcceptShare)
	c.share("offers.store_offer_share", o.StoreOfferShare)
	c.share("offers.store_accept_share", o.StoreAcceptShare)
	c.weights("offers.kinds", o.Kinds, offerKinds)

	co := p.Corrections
	c.share("corrections.retraction_share", co.RetractionShare)
	c.span("corrections.retraction_hours", co.RetractionHours, 0)
	if len(co.RetractionReasons) == 0 {
		c.add("corrections.retraction_reasons", "at least one reason is required")
	}
	for i, r := range co.RetractionReasons {
		if r == "" || len(r) > 256 {
			c.add(fmt.Sprintf("corrections.retraction_reasons[%d]", i), "1-256 bytes, without personal data")
		}
	}
	c.share("corrections.reversal_share", co.ReversalShare)
	c.weights("corrections.reversal_reasons", co.ReversalReasons, reversalReasons)
	c.span("corrections.reversal_hours", co.ReversalHours, 0)
	c.share("corrections.partial_reversal_share", co.PartialReversalShr)
}

func (p *Params) validateChurn(c *checker) {
	ch := p.Churn
	c.share("churn.drift_per_month", ch.DriftPerMonth)
	c.span("churn.drift_days", ch.DriftDays, 1)
	for _, s := range slices.Sorted(mapKeys(ch.Propensity)) {
		if !slices.Contains(individualSegments, s) && !slices.Contains(enterpriseSegments, s) {
			c.add("churn.propensity."+s, "unknown segment")
		}
		c.nonNegative("churn.propensity."+s, ch.Propensity[s])
	}
	c.nonNegative("churn.prepaid_propensity", ch.PrepaidPropensity)
	c.nonNegative("churn.bad_experience_factor", ch.BadExperienceFactor)
	c.positive("churn.bad_experience_half_life_days", ch.BadExperienceHalfLifeDays)
	c.share("churn.usage_drop", ch.UsageDrop)
	c.share("churn.recharge_amount_drop", ch.RechargeAmountDrop)
	c.nonNegative("churn.complaint_boost", ch.ComplaintBoost)
	c.nonNegative("churn.care_call_boost", ch.CareCallBoost)
	c.nonNegative("churn.downgrade_boost", ch.DowngradeBoost)
	c.share("churn.sentiment_drop", ch.SentimentDrop)
	c.nonNegative("churn.late_pay_days", ch.LatePayDays)
	c.weights("churn.outcomes", ch.Outcomes, driftOutcomes)
	c.span("churn.recover_days", ch.RecoverDays, 1)
	c.span("churn.port_out_days", ch.PortOutDays, 0)
	c.share("churn.retention_call_share", ch.RetentionCallShare)
	c.share("churn.retention_answer_share", ch.RetentionAnswerShare)
	c.share("churn.retention_success_share", ch.RetentionSuccessShare)
	c.weights("churn.target_operators", ch.TargetOperators, targetOperators)
	c.weights("churn.port_out_reasons", ch.PortOutReasons, portOutReasons)
	c.share("churn.sudden_per_month", ch.SuddenPerMonth)
	c.weights("churn.sudden_reasons", ch.SuddenReasons, suddenReasons)
}
