package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// ParamsVersion is the version of the parameter file this package reads. A change of
// any parameter is a new version: the population is frozen per version, so that churn
// scorers tuned against it are never tuned by changing it.
const ParamsVersion = 1

// Params is the content of deploy/simulator.json: the simulated operator's population
// and its behaviour. Rates are per customer and per day unless named otherwise; shares
// are in [0, 1]; money is in CNY.
type Params struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Comment string `json:"comment,omitempty"`
	// UTCOffset is the operator's time zone offset, "+08:00" for China (no daylight
	// saving): days and months are calendar days and months at this offset.
	UTCOffset string `json:"utc_offset"`
	// Calibration are the published averages the population is calibrated to. They are
	// targets the tests measure against, not inputs of the generator.
	Calibration Calibration `json:"calibration"`
	// DevAPIKeys are the clear development keys of the channels (name -> key), the
	// well-known "dev-<channel>-key" whose hashes deploy/channels.json holds. Never put
	// a production key here.
	DevAPIKeys map[string]string `json:"dev_api_keys"`
	Population Population        `json:"population"`
	Value      Value             `json:"value"`
	Plans      []PlanParam       `json:"plans"`
	// ChannelMix routes each kind of interaction to channels by weight.
	ChannelMix map[string]map[string]float64 `json:"channel_mix"`
	// HistoryChannel carries, in history mode, events older than their channel's
	// late-arrival limit when it allows their type (the CRM migration channel).
	HistoryChannel string `json:"history_channel"`
	// HourWeights is the weight of each hour of the day (0-23) for customer activity.
	HourWeights []float64   `json:"hour_weights"`
	Recharge    Recharge    `json:"recharge"`
	Billing     Billing     `json:"billing"`
	Calls       Calls       `json:"calls"`
	Stores      Stores      `json:"stores"`
	Complaints  Complaints  `json:"complaints"`
	Usage       Usage       `json:"usage"`
	Surveys     Surveys     `json:"surveys"`
	Devices     Devices     `json:"devices"`
	PlanChanges PlanChanges `json:"plan_changes"`
	Updates     Updates     `json:"customer_updates"`
	Incidents   Incidents   `json:"network_incidents"`
	Offers      Offers      `json:"offers"`
	Corrections Corrections `json:"corrections"`
	Churn       Churn       `json:"churn"`
}

// Calibration are the targets of the population (DOMAIN.md, China Mobile 2023).
type Calibration struct {
	ARPUCNY              float64 `json:"arpu_cny"`
	Top20RevenueShare    float64 `json:"top20_revenue_share"`
	VoiceMinutesPerMonth float64 `json:"voice_minutes_per_month"`
	DataGBPerMonth       float64 `json:"data_gb_per_month"`
	AnsweredIn20sShare   float64 `json:"answered_in_20s_share"`
	BigCustomerCNY       float64 `json:"big_customer_cny"`
}

// Population is who the customers are.
type Population struct {
	// Customers is the initial population when no size is given on the command line.
	Customers int `json:"customers"`
	// PrepaidShare is the share of individual customers on prepaid plans; enterprise
	// customers are always postpaid.
	PrepaidShare    float64  `json:"prepaid_share"`
	EnterpriseShare float64  `json:"enterprise_share"`
	Regions         []Region `json:"regions"`
	// Segments weighs the segments of individual and enterprise customers.
	Segments struct {
		Individual map[string]float64 `json:"individual"`
		Enterprise map[string]float64 `json:"enterprise"`
	} `json:"segments"`
	// InitialLoadChannel registers the initial population (the existing base imported
	// from the old CRM); empty: the registration channel mix.
	InitialLoadChannel string `json:"initial_load_channel"`
	// InitialRegistrationHours spreads the initial registrations over the first hours.
	InitialRegistrationHours float64 `json:"initial_registration_hours"`
	// AcquisitionPerMonth is the new customers per month, as a share of the initial
	// population.
	AcquisitionPerMonth float64 `json:"acquisition_per_month"`
	// ContractShare of postpaid customers have a contract end date, ContractMonths ahead
	// at most.
	ContractShare  float64 `json:"contract_share"`
	ContractMonths int     `json:"contract_months"`
	// DealerIncompleteShare of dealer registrations lack the address and id number,
	// completed later by a customer.updated from a store (poor data at the first touch).
	DealerIncompleteShare float64 `json:"dealer_incomplete_share"`
	// DealerIncompleteFixDays bounds when the store completes them.
	DealerIncompleteFixDays [2]float64 `json:"dealer_incomplete_fix_days"`
}

// Region is an operator region (city branch).
type Region struct {
	ID       string  `json:"id"`
	Province string  `json:"province"`
	City     string  `json:"city"`
	Weight   float64 `json:"weight"`
	// AreaCode is the first four digits of resident id numbers issued there.
	AreaCode  string   `json:"area_code"`
	Districts []string `json:"districts"`
	Stores    int      `json:"stores"`
}

// Lognormal is a lognormal distribution given by its median and shape, clipped.
type Lognormal struct {
	Median float64 `json:"median"`
	Sigma  float64 `json:"sigma"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Value is what customers spend a month (CNY): skewed, so that a fifth of the
// customers bring most of the revenue.
type Value struct {
	Individual Lognormal `json:"individual"`
	Enterprise Lognormal `json:"enterprise"`
	// SegmentFactor multiplies the spend of a segment (missing: 1).
	SegmentFactor map[string]float64 `json:"segment_factor"`
	// PostpaidFactor multiplies the spend of postpaid individuals.
	PostpaidFactor float64 `json:"postpaid_factor"`
	// PlanFeeShare: customers take the dearest plan whose fee is at most this share of
	// their spend (the rest is usage above the plan).
	PlanFeeShare float64 `json:"plan_fee_share"`
}

// PlanParam is a tariff plan of the catalogue.
type PlanParam struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Kind          string  `json:"kind"`
	MonthlyFeeCNY float64 `json:"monthly_fee_cny"`
}

// Recharge is how prepaid customers top up: round amounts, when the balance runs low.
type Recharge struct {
	AmountsCNY []int `json:"amounts_cny"`
	// TriggerDays: a customer recharges when the balance covers fewer days of spend.
	TriggerDays float64 `json:"trigger_days"`
	// CoverMonths bounds the months of spend one recharge is meant to cover.
	CoverMonths [2]float64 `json:"cover_months"`
	// DailyNoiseSigma is the lognormal noise of a day's spend.
	DailyNoiseSigma float64            `json:"daily_noise_sigma"`
	Methods         map[string]float64 `json:"methods"`
	// StoreMethods are the methods at a store or dealer counter.
	StoreMethods map[string]float64 `json:"store_methods"`
}

// Billing is the postpaid cycle: a bill on the 1st for the month before, paid later.
type Billing struct {
	IssueHours [2]float64 `json:"issue_hours"`
	DueDay     int        `json:"due_day"`
	NoiseSigma float64    `json:"noise_sigma"`
	// PayDelayDays is the lognormal delay from issue to payment.
	PayDelayDays   Lognormal          `json:"pay_delay_days"`
	AutoDebitShare float64            `json:"auto_debit_share"`
	Methods        map[string]float64 `json:"methods"`
	// AdjustmentPerBill is the chance of an adjustment of a bill (billing error,
	// goodwill, promotion, late fee).
	AdjustmentPerBill float64            `json:"adjustment_per_bill"`
	AdjustmentReasons map[string]float64 `json:"adjustment_reasons"`
	// BillingCallShare of bills lead to a call to the billing queue.
	BillingCallShare float64 `json:"billing_call_share"`
}

// Calls is the call center: inbound queues with waits, abandonment and handling.
type Calls struct {
	InboundPerDay float64            `json:"inbound_per_day"`
	QueueMix      map[string]float64 `json:"queue_mix"`
	// VIPValueCNY: customers spending at least this (and enterprises) call the VIP queue.
	VIPValueCNY float64          `json:"vip_value_cny"`
	Queues      map[string]Queue `json:"queues"`
	// HourCongestion multiplies queue waits by hour of the day.
	HourCongestion []float64 `json:"hour_congestion"`
	// CallbackShare of unanswered inbound calls leave a callback request.
	CallbackShare float64                       `json:"callback_share"`
	Outcomes      map[string]map[string]float64 `json:"outcomes"`
	Agents        int                           `json:"agents"`
}

// Queue is one call center queue.
type Queue struct {
	// WaitMeanSeconds is the mean of the exponential time to answer.
	WaitMeanSeconds float64 `json:"wait_mean_seconds"`
	// PatienceMeanSeconds is the mean of the exponential time a caller waits before
	// hanging up.
	PatienceMeanSeconds float64   `json:"patience_mean_seconds"`
	HandlingSeconds     Lognormal `json:"handling_seconds"`
}

// Stores is counter service at business halls.
type Stores struct {
	VisitsPerDay    float64            `json:"visits_per_day"`
	Purposes        map[string]float64 `json:"purposes"`
	DurationSeconds Lognormal          `json:"duration_seconds"`
	StaffPerStore   int                `json:"staff_per_store"`
}

// Severity is one complaint severity.
type Severity struct {
	Weight        float64 `json:"weight"`
	PromisedHours float64 `json:"promised_hours"`
	// ResolveShare is the lognormal resolution time as a share of the promised time.
	ResolveShare Lognormal `json:"resolve_share"`
}

// Complaints are complaints and their resolution against the promised deadline.
type Complaints struct {
	PerDay     float64             `json:"per_day"`
	Categories map[string]float64  `json:"categories"`
	Severities map[string]Severity `json:"severities"`
	// EnterpriseDeadlineFactor shortens the promised deadline of enterprise customers
	// (their SLA).
	EnterpriseDeadlineFactor float64            `json:"enterprise_deadline_factor"`
	Resolutions              map[string]float64 `json:"resolutions"`
	SatisfactionAskedShare   float64            `json:"satisfaction_asked_share"`
	// CompensationCNY bounds compensations; postpaid ones also credit the bill.
	CompensationCNY [2]float64 `json:"compensation_cny"`
	// DescriptionShare of complaints carry a description (personal free text).
	DescriptionShare float64 `json:"description_share"`
}

// Usage is the daily usage summary, calibrated to the monthly averages.
type Usage struct {
	VoiceMinutesPerMonth float64 `json:"voice_minutes_per_month"`
	DataGBPerMonth       float64 `json:"data_gb_per_month"`
	SMSPerMonth          float64 `json:"sms_per_month"`
	MinutesPerCall       float64 `json:"minutes_per_call"`
	DroppedCallRate      float64 `json:"dropped_call_rate"`
	// CustomerSigma spreads usage between customers; ValueCorrelation ties it to spend.
	CustomerSigma    float64 `json:"customer_sigma"`
	ValueCorrelation float64 `json:"value_correlation"`
	DailySigma       float64 `json:"daily_sigma"`
	WeekendFactor    float64 `json:"weekend_factor"`
	// PublishHours bounds when the mediation system publishes yesterday's summary.
	PublishHours [2]float64 `json:"publish_hours"`
}

// Surveys are NPS and CSAT surveys.
type Surveys struct {
	AfterCallShare  float64 `json:"after_call_share"`
	AfterVisitShare float64 `json:"after_visit_share"`
	NPSPerDay       float64 `json:"nps_per_day"`
	CommentShare    float64 `json:"comment_share"`
	// ScoreNoise is the spread of a score around the customer's sentiment.
	ScoreNoise float64 `json:"score_noise"`
}

// Model is a handset model.
type Model struct {
	Name     string  `json:"name"`
	PriceCNY float64 `json:"price_cny"`
}

// Brand is a handset brand.
type Brand struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	Models []Model `json:"models"`
}

// Devices are handset changes.
type Devices struct {
	PerDay float64 `json:"per_day"`
	Brands []Brand `json:"brands"`
}

// PlanChanges are plan upgrades and downgrades.
type PlanChanges struct {
	UpgradePerDay   float64 `json:"upgrade_per_day"`
	DowngradePerDay float64 `json:"downgrade_per_day"`
	// NextMonthShare of changes take effect on the 1st of next month.
	NextMonthShare float64 `json:"next_month_share"`
}

// Updates are changes of identity or contact data.
type Updates struct {
	PerDay float64 `json:"per_day"`
}

// Incidents are network incidents per region, felt by a share of its customers.
type Incidents struct {
	PerRegionPerDay float64            `json:"per_region_per_day"`
	Kinds           map[string]float64 `json:"kinds"`
	Severities      map[string]float64 `json:"severities"`
	DurationMinutes Lognormal          `json:"duration_minutes"`
	AffectedShare   [2]float64         `json:"affected_share"`
	// ReportDelayMinutes bounds how late network operations publish per customer.
	ReportDelayMinutes float64 `json:"report_delay_minutes"`
	// DroppedCallFactor multiplies the dropped-call rate of affected customers that day.
	DroppedCallFactor float64 `json:"dropped_call_factor"`
	// OutageDataFactor multiplies their data usage that day for an outage.
	OutageDataFactor float64 `json:"outage_data_factor"`
	CallShare        float64 `json:"call_share"`
	ComplaintShare   float64 `json:"complaint_share"`
}

// Offers are telesales and counter offers.
type Offers struct {
	TelesalesPerDay      float64            `json:"telesales_per_day"`
	TelesalesAnswerShare float64            `json:"telesales_answer_share"`
	TelesalesAcceptShare float64            `json:"telesales_accept_share"`
	StoreOfferShare      float64            `json:"store_offer_share"`
	StoreAcceptShare     float64            `json:"store_accept_share"`
	Kinds                map[string]float64 `json:"kinds"`
}

// Corrections are retractions and recharge reversals.
type Corrections struct {
	// RetractionShare of retractable events (store visits, calls, recharges, device
	// changes, bill payments) are later retracted by their channel.
	RetractionShare    float64            `json:"retraction_share"`
	RetractionHours    [2]float64         `json:"retraction_hours"`
	RetractionReasons  []string           `json:"retraction_reasons"`
	ReversalShare      float64            `json:"reversal_share"`
	ReversalReasons    map[string]float64 `json:"reversal_reasons"`
	ReversalHours      [2]float64         `json:"reversal_hours"`
	PartialReversalShr float64            `json:"partial_reversal_share"`
}

// Churn is the drift of customers who are leaving: gradual, over weeks.
type Churn struct {
	// DriftPerMonth is the share of active customers who start drifting each month
	// (before propensity and bad experiences).
	DriftPerMonth float64 `json:"drift_per_month"`
	// DriftDays bounds the length of a drift, from its start to its end.
	DriftDays [2]float64 `json:"drift_days"`
	// Propensity multiplies the drift hazard by segment, and for prepaid customers.
	Propensity        map[string]float64 `json:"propensity"`
	PrepaidPropensity float64            `json:"prepaid_propensity"`
	// BadExperienceFactor multiplies the hazard per unit of recent bad experience
	// (abandoned calls, late complaints, incidents), which decays by half in
	// BadExperienceHalfLifeDays.
	BadExperienceFactor       float64 `json:"bad_experience_factor"`
	BadExperienceHalfLifeDays float64 `json:"bad_experience_half_life_days"`
	// At full drift: usage and spend fall by UsageDrop, recharge amounts by
	// RechargeAmountDrop; complaints, care calls and plan downgrades rise by their
	// boosts; sentiment falls by SentimentDrop; payments come later by LatePayDays.
	UsageDrop          float64 `json:"usage_drop"`
	RechargeAmountDrop float64 `json:"recharge_amount_drop"`
	ComplaintBoost     float64 `json:"complaint_boost"`
	CareCallBoost      float64 `json:"care_call_boost"`
	DowngradeBoost     float64 `json:"downgrade_boost"`
	SentimentDrop      float64 `json:"sentiment_drop"`
	LatePayDays        float64 `json:"late_pay_days"`
	// Outcomes weighs what happens at the end of a drift: recover, port_out,
	// customer_request, non_payment (postpaid only; prepaid count it as
	// customer_request).
	Outcomes map[string]float64 `json:"outcomes"`
	// RecoverDays bounds how long a recovering customer takes to get back to normal.
	RecoverDays [2]float64 `json:"recover_days"`
	// PortOutDays bounds the days from the port-out request to the termination.
	PortOutDays [2]float64 `json:"port_out_days"`
	// RetentionCallShare of port-out requests get a retention call, which retains the
	// customer with RetentionSuccessShare.
	RetentionCallShare    float64            `json:"retention_call_share"`
	RetentionAnswerShare  float64            `json:"retention_answer_share"`
	RetentionSuccessShare float64            `json:"retention_success_share"`
	TargetOperators       map[string]float64 `json:"target_operators"`
	PortOutReasons        map[string]float64 `json:"port_out_reasons"`
	// SuddenPerMonth is the share of customers a month who leave without drifting
	// (relocation, death), with SuddenReasons.
	SuddenPerMonth float64            `json:"sudden_per_month"`
	SuddenReasons  map[string]float64 `json:"sudden_reasons"`
}

// LoadParams reads and validates a parameter file. Unknown fields are refused.
func LoadParams(path string) (*Params, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("simulator params: %w", err)
	}
	p, err := ParseParams(b)
	if err != nil {
		return nil, fmt.Errorf("simulator params %s: %w", path, err)
	}
	return p, nil
}

// ParseParams decodes and validates the content of a parameter file.
func ParseParams(b []byte) (*Params, error) {
	var p Params
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Location is the operator's time zone, a fixed offset.
func (p *Params) Location() (*time.Location, error) {
	t, err := time.Parse("-07:00", p.UTCOffset)
	if err != nil {
		return nil, err
	}
	_, off := t.Zone()
	if off < -12*3600 || off > 14*3600 {
		return nil, errors.New("offset out of range")
	}
	return time.FixedZone("UTC"+p.UTCOffset, off), nil
}
