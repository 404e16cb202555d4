package events

import "time"

// Event type names: stable CloudEvents types, "noun.verb". The major version of a
// type's schema travels in the event's dataschema, never in its type.
const (
	TypeCustomerRegistered     = "customer.registered"
	TypeCustomerUpdated        = "customer.updated"
	TypePlanChanged            = "plan.changed"
	TypeStoreVisited           = "store.visited"
	TypeCallCompleted          = "call.completed"
	TypeRechargeCompleted      = "recharge.completed"
	TypeRechargeReversed       = "recharge.reversed"
	TypeBillIssued             = "bill.issued"
	TypeBillAdjusted           = "bill.adjusted"
	TypeBillPaid               = "bill.paid"
	TypeComplaintOpened        = "complaint.opened"
	TypeComplaintResolved      = "complaint.resolved"
	TypeUsageSummarized        = "usage.summarized"
	TypeNetworkIncident        = "network.incident"
	TypeSurveyAnswered         = "survey.answered"
	TypeOfferPresented         = "offer.presented"
	TypeOfferAccepted          = "offer.accepted"
	TypePointsRedeemed         = "points.redeemed"
	TypeDeviceChanged          = "device.changed"
	TypePortOutRequested       = "number.port_out_requested"
	TypeSubscriptionTerminated = "subscription.terminated"
	TypeEventRetracted         = "event.retracted"
	TypeClockTicked            = "clock.ticked"
	TypeDeadLetterDiscarded    = "deadletter.discarded"
	TypeLoyaltyRulesActivated  = "loyalty.rules_activated"
	TypePointsAdjusted         = "points.adjusted"
	TypeChurnModelActivated    = "churn.model_activated"
	TypeAlertAcknowledged      = "alert.acknowledged"
	TypeAlertClosed            = "alert.closed"
	TypeCustomerErased         = "customer.erased"
)

// Money is an amount in integer fen (1/100 yuan) with an ISO 4217 currency code.
type Money struct {
	Fen      int64  `json:"fen"`
	Currency string `json:"currency"`
}

// CNY returns an amount in renminbi.
func CNY(fen int64) Money { return Money{Fen: fen, Currency: "CNY"} }

// Plan is a tariff plan.
type Plan struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Kind       string `json:"kind"` // prepaid or postpaid
	MonthlyFee Money  `json:"monthly_fee"`
}

// Dates ("2026-11-01") and months ("2026-11") are strings in the payload types: they
// name a calendar day or month in the operator's time zone, not an instant. Instants
// are time.Time, encoded RFC 3339 with their offset.

// CustomerRegistered: a new customer was activated. customer.registered v1.
type CustomerRegistered struct {
	Name         Personal `json:"name"`
	Phone        Personal `json:"phone"`
	IDType       string   `json:"id_type,omitempty"`
	IDNumber     Personal `json:"id_number,omitzero"`
	Address      Personal `json:"address,omitzero"`
	CustomerType string   `json:"customer_type"`
	Segment      string   `json:"segment,omitempty"`
	Region       string   `json:"region"`
	Plan         Plan     `json:"plan"`
	ContractEnd  string   `json:"contract_end,omitempty"` // YYYY-MM-DD
	EnterpriseID string   `json:"enterprise_id,omitempty"`
	DealerID     string   `json:"dealer_id,omitempty"`
	StoreID      string   `json:"store_id,omitempty"`
	StaffID      string   `json:"staff_id,omitempty"`
}

func (CustomerRegistered) EventType() string { return TypeCustomerRegistered }
func (CustomerRegistered) SchemaMajor() int  { return 1 }

// CustomerUpdated: identity, contact or contract data changed; only the changed fields
// are set, at least one. customer.updated v1. An id number needs its id type.
type CustomerUpdated struct {
	Name         Personal `json:"name,omitzero"`
	Phone        Personal `json:"phone,omitzero"`
	IDType       string   `json:"id_type,omitempty"`
	IDNumber     Personal `json:"id_number,omitzero"`
	Address      Personal `json:"address,omitzero"`
	Region       string   `json:"region,omitempty"`
	Segment      string   `json:"segment,omitempty"`
	ContractEnd  string   `json:"contract_end,omitempty"` // YYYY-MM-DD
	EnterpriseID string   `json:"enterprise_id,omitempty"`
}

func (CustomerUpdated) EventType() string { return TypeCustomerUpdated }
func (CustomerUpdated) SchemaMajor() int  { return 1 }

// PlanChanged: the customer moved to another tariff plan. plan.changed v1.
type PlanChanged struct {
	From        Plan   `json:"from"`
	To          Plan   `json:"to"`
	Direction   string `json:"direction"`              // upgrade, downgrade or lateral
	EffectiveOn string `json:"effective_on,omitempty"` // YYYY-MM-DD; empty: from the event time
	ContractEnd string `json:"contract_end,omitempty"` // YYYY-MM-DD
	StoreID     string `json:"store_id,omitempty"`
	StaffID     string `json:"staff_id,omitempty"`
}

func (PlanChanged) EventType() string { return TypePlanChanged }
func (PlanChanged) SchemaMajor() int  { return 1 }

// StoreVisited: the customer was served at a business hall counter. store.visited v1.
type StoreVisited struct {
	StoreID         string `json:"store_id"`
	StaffID         string `json:"staff_id,omitempty"`
	Purpose         string `json:"purpose"` // inquiry, purchase, sim_swap, plan_change, complaint, payment, device, other
	DurationSeconds int    `json:"duration_seconds"`
}

func (StoreVisited) EventType() string { return TypeStoreVisited }
func (StoreVisited) SchemaMajor() int  { return 1 }

// CallCompleted: a call center call ended. call.completed v1. The event time is when
// the call was offered (reached the queue, or was dialled).
type CallCompleted struct {
	CallID          string `json:"call_id"`
	Direction       string `json:"direction"` // inbound or outbound
	Queue           string `json:"queue"`     // care, billing, technical, retention, telesales, vip
	WaitSeconds     int    `json:"wait_seconds"`
	HandlingSeconds int    `json:"handling_seconds"` // 0 when not answered
	Answered        bool   `json:"answered"`
	Outcome         string `json:"outcome"`
	AgentID         string `json:"agent_id,omitempty"`
	AlertID         string `json:"alert_id,omitempty"`
}

func (CallCompleted) EventType() string { return TypeCallCompleted }
func (CallCompleted) SchemaMajor() int  { return 1 }

// RechargeCompleted: a prepaid top-up succeeded. recharge.completed v2, the current
// version: Decode returns it for v1 events too, upcast (Credited = Amount).
type RechargeCompleted struct {
	RechargeID  string `json:"recharge_id"`
	Amount      Money  `json:"amount"`   // what the customer paid: the revenue
	Credited    Money  `json:"credited"` // added to the balance: face value plus any bonus
	Method      string `json:"method"`   // cash, bank_card, wechat_pay, alipay, unionpay, voucher, auto_debit
	PromotionID string `json:"promotion_id,omitempty"`
	StoreID     string `json:"store_id,omitempty"`
	StaffID     string `json:"staff_id,omitempty"`
}

func (RechargeCompleted) EventType() string { return TypeRechargeCompleted }
func (RechargeCompleted) SchemaMajor() int  { return 2 }

// RechargeCompletedV1 is recharge.completed v1, kept for producers not yet moved to v2
// (the doors accept both) and for the door's strict decode of v1 input. Consumers never
// see it: Decode upcasts v1 payloads to RechargeCompleted.
type RechargeCompletedV1 struct {
	RechargeID string `json:"recharge_id"`
	Amount     Money  `json:"amount"`
	Method     string `json:"method"`
	StoreID    string `json:"store_id,omitempty"`
	StaffID    string `json:"staff_id,omitempty"`
}

func (RechargeCompletedV1) EventType() string { return TypeRechargeCompleted }
func (RechargeCompletedV1) SchemaMajor() int  { return 1 }

// RechargeReversed: a recharge was reversed in full or in part. recharge.reversed v1.
type RechargeReversed struct {
	Recharge EventRef `json:"recharge"` // the recharge.completed event
	Amount   Money    `json:"amount"`   // positive: the amount taken back
	Reason   string   `json:"reason"`
}

func (RechargeReversed) EventType() string { return TypeRechargeReversed }
func (RechargeReversed) SchemaMajor() int  { return 1 }

// BillIssued: a monthly bill was issued. bill.issued v1.
type BillIssued struct {
	BillID  string `json:"bill_id"`
	Period  string `json:"period"` // YYYY-MM
	Amount  Money  `json:"amount"` // zero or more
	DueDate string `json:"due_date"`
}

func (BillIssued) EventType() string { return TypeBillIssued }
func (BillIssued) SchemaMajor() int  { return 1 }

// BillAdjusted: an issued bill was adjusted. bill.adjusted v1.
type BillAdjusted struct {
	BillID   string   `json:"bill_id"`
	Amount   Money    `json:"amount"` // signed, never zero: a credit is negative
	Reason   string   `json:"reason"`
	RefersTo EventRef `json:"refers_to,omitzero"`
}

func (BillAdjusted) EventType() string { return TypeBillAdjusted }
func (BillAdjusted) SchemaMajor() int  { return 1 }

// BillPaid: a payment was received against a bill. bill.paid v1.
type BillPaid struct {
	BillID   string `json:"bill_id"`
	Amount   Money  `json:"amount"` // positive
	Method   string `json:"method"`
	PaidLate *bool  `json:"paid_late,omitempty"` // nil: not stated
	StoreID  string `json:"store_id,omitempty"`
	StaffID  string `json:"staff_id,omitempty"`
}

func (BillPaid) EventType() string { return TypeBillPaid }
func (BillPaid) SchemaMajor() int  { return 1 }

// ComplaintOpened: a complaint was registered. complaint.opened v1.
type ComplaintOpened struct {
	ComplaintID string    `json:"complaint_id"`
	Category    string    `json:"category"` // network, billing, service, product, fraud, other
	Severity    string    `json:"severity"` // low, medium, high, critical
	PromisedBy  time.Time `json:"promised_by"`
	Description Personal  `json:"description,omitzero"`
	StoreID     string    `json:"store_id,omitempty"`
	AgentID     string    `json:"agent_id,omitempty"`
}

func (ComplaintOpened) EventType() string { return TypeComplaintOpened }
func (ComplaintOpened) SchemaMajor() int  { return 1 }

// ComplaintResolved: a complaint was closed. complaint.resolved v1.
type ComplaintResolved struct {
	ComplaintID  string `json:"complaint_id"`
	Resolution   string `json:"resolution"`             // resolved, rejected, withdrawn, compensated
	Satisfaction int    `json:"satisfaction,omitempty"` // 1-5; 0: not asked
	Compensation Money  `json:"compensation,omitzero"`
	StoreID      string `json:"store_id,omitempty"`
	AgentID      string `json:"agent_id,omitempty"`
}

func (ComplaintResolved) EventType() string { return TypeComplaintResolved }
func (ComplaintResolved) SchemaMajor() int  { return 1 }

// UsageSummarized: usage over a period, normally a day. usage.summarized v1.
type UsageSummarized struct {
	PeriodStart  string  `json:"period_start"` // YYYY-MM-DD
	PeriodEnd    string  `json:"period_end"`   // YYYY-MM-DD, inclusive
	VoiceMinutes int64   `json:"voice_minutes"`
	DataMB       float64 `json:"data_mb"`
	SMS          int64   `json:"sms"`
	Calls        int64   `json:"calls"`
	DroppedCalls int64   `json:"dropped_calls"`
}

func (UsageSummarized) EventType() string { return TypeUsageSummarized }
func (UsageSummarized) SchemaMajor() int  { return 1 }

// NetworkIncident: a network incident affected the customer. network.incident v1.
type NetworkIncident struct {
	IncidentID string    `json:"incident_id"`
	Kind       string    `json:"kind"`     // outage, degradation, dropped_calls_spike
	Severity   string    `json:"severity"` // low, medium, high, critical
	Region     string    `json:"region"`
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at,omitzero"` // zero: still going on
}

func (NetworkIncident) EventType() string { return TypeNetworkIncident }
func (NetworkIncident) SchemaMajor() int  { return 1 }

// SurveyAnswered: the customer answered an NPS (0-10) or CSAT (1-5) survey.
// survey.answered v1.
type SurveyAnswered struct {
	SurveyID string   `json:"survey_id"`
	Kind     string   `json:"kind"` // nps or csat
	Score    int      `json:"score"`
	Comment  Personal `json:"comment,omitzero"`
	RefersTo EventRef `json:"refers_to,omitzero"` // the touchpoint surveyed
}

func (SurveyAnswered) EventType() string { return TypeSurveyAnswered }
func (SurveyAnswered) SchemaMajor() int  { return 1 }

// OfferPresented: an offer was presented to the customer. offer.presented v1.
type OfferPresented struct {
	OfferID string `json:"offer_id"`
	Kind    string `json:"kind"` // discount, data_bonus, device, plan_upgrade, points, retention_bundle
	AlertID string `json:"alert_id,omitempty"`
	StaffID string `json:"staff_id,omitempty"`
}

func (OfferPresented) EventType() string { return TypeOfferPresented }
func (OfferPresented) SchemaMajor() int  { return 1 }

// OfferAccepted: the customer accepted an offer. offer.accepted v1.
type OfferAccepted struct {
	OfferID string `json:"offer_id"`
	AlertID string `json:"alert_id,omitempty"`
}

func (OfferAccepted) EventType() string { return TypeOfferAccepted }
func (OfferAccepted) SchemaMajor() int  { return 1 }

// PointsRedeemed: a loyalty member spent points. points.redeemed v1; published only by
// the redemption service.
type PointsRedeemed struct {
	RedemptionID  string `json:"redemption_id"`
	Points        int64  `json:"points"` // at least 1
	Partner       string `json:"partner"`
	Item          string `json:"item"`
	ReservationID string `json:"reservation_id,omitempty"`
}

func (PointsRedeemed) EventType() string { return TypePointsRedeemed }
func (PointsRedeemed) SchemaMajor() int  { return 1 }

// PointsAdjusted: a club operator corrected a member's points (either sign, never
// zero). points.adjusted v1; published only by the club's operators.
type PointsAdjusted struct {
	AdjustmentID string `json:"adjustment_id"`
	Points       int64  `json:"points"`
	Reason       string `json:"reason"`
	Operator     string `json:"operator"` // account id, never a name
}

func (PointsAdjusted) EventType() string { return TypePointsAdjusted }
func (PointsAdjusted) SchemaMajor() int  { return 1 }

// DeviceChanged: the customer started using a new handset. device.changed v1.
type DeviceChanged struct {
	IMEI        Personal `json:"imei,omitzero"`
	Brand       string   `json:"brand"`
	Model       string   `json:"model"`
	PurchasedAt string   `json:"purchased_at"` // YYYY-MM-DD
	Price       Money    `json:"price,omitzero"`
	StoreID     string   `json:"store_id,omitempty"`
}

func (DeviceChanged) EventType() string { return TypeDeviceChanged }
func (DeviceChanged) SchemaMajor() int  { return 1 }

// PortOutRequested: the customer asked to port the number to another operator.
// number.port_out_requested v1.
type PortOutRequested struct {
	RequestID      string `json:"request_id"`
	TargetOperator string `json:"target_operator"` // cmcc, unicom, telecom, broadnet, other
	Reason         string `json:"reason,omitempty"`
}

func (PortOutRequested) EventType() string { return TypePortOutRequested }
func (PortOutRequested) SchemaMajor() int  { return 1 }

// SubscriptionTerminated: the subscription ended. subscription.terminated v1.
type SubscriptionTerminated struct {
	Reason      string    `json:"reason"` // port_out, non_payment, customer_request, deceased, fraud, other
	EffectiveAt time.Time `json:"effective_at"`
}

func (SubscriptionTerminated) EventType() string { return TypeSubscriptionTerminated }
func (SubscriptionTerminated) SchemaMajor() int  { return 1 }

// EventRetracted: a wrong event is withdrawn; its subject is the customer of the
// retracted event. event.retracted v1. The reason is shown in clear and must carry no
// personal data.
type EventRetracted struct {
	Target EventRef `json:"target"`
	Reason string   `json:"reason"` // 1-256 characters
}

func (EventRetracted) EventType() string { return TypeEventRetracted }
func (EventRetracted) SchemaMajor() int  { return 1 }

// LoyaltyRulesActivated: a version of the loyalty club's earning rules is in force
// from EffectiveAt on. loyalty.rules_activated v1, partition-wide: publish it with
// NewPartitionEvents.
type LoyaltyRulesActivated struct {
	Version     string    `json:"version"`
	EffectiveAt time.Time `json:"effective_at"`
	Note        string    `json:"note,omitempty"`
}

func (LoyaltyRulesActivated) EventType() string { return TypeLoyaltyRulesActivated }
func (LoyaltyRulesActivated) SchemaMajor() int  { return 1 }

// ChurnModelActivated: a churn scorer (a rule version, "rules:<version>", or a trained
// model, "sha256:<hex>" of its content) is in force from EffectiveAt on.
// churn.model_activated v1, partition-wide: publish it with NewPartitionEvents.
type ChurnModelActivated struct {
	Model       string    `json:"model"`
	EffectiveAt time.Time `json:"effective_at"`
	Note        string    `json:"note,omitempty"`
}

func (ChurnModelActivated) EventType() string { return TypeChurnModelActivated }
func (ChurnModelActivated) SchemaMajor() int  { return 1 }

// AlertAcknowledged: the retention desk took a churn alert in hand.
// alert.acknowledged v1; published only by the console's command service.
type AlertAcknowledged struct {
	AlertID string `json:"alert_id"`
	StaffID string `json:"staff_id"`
	Note    string `json:"note,omitempty"`
}

func (AlertAcknowledged) EventType() string { return TypeAlertAcknowledged }
func (AlertAcknowledged) SchemaMajor() int  { return 1 }

// Alert outcomes.
const (
	OutcomeRetained = "retained"
	OutcomeChurned  = "churned"
)

// AlertClosed: the retention desk closed a churn alert with its outcome (retained or
// churned). alert.closed v1; published only by the console's command service.
type AlertClosed struct {
	AlertID string `json:"alert_id"`
	Outcome string `json:"outcome"`
	StaffID string `json:"staff_id"`
	Note    string `json:"note,omitempty"`
}

func (AlertClosed) EventType() string { return TypeAlertClosed }
func (AlertClosed) SchemaMajor() int  { return 1 }

// ClockTicked: a period boundary passed. clock.ticked v1, partition-wide: publish it
// with NewPartitionEvents.
type ClockTicked struct {
	Period string    `json:"period"` // day or hour
	Tick   time.Time `json:"tick"`
}

func (ClockTicked) EventType() string { return TypeClockTicked }
func (ClockTicked) SchemaMajor() int  { return 1 }

// DeadLetterDiscarded: an operator discarded an event a projection target had parked.
// deadletter.discarded v1; published only by the ops tools. Its subject is the parked
// event's customer; it changes no aggregate and carries no personal data.
type DeadLetterDiscarded struct {
	Target   string   `json:"target"` // projection target, e.g. customer360_v1
	Stream   string   `json:"stream"`
	Seq      uint64   `json:"seq"`
	Event    EventRef `json:"event"`                // the parked event
	Type     string   `json:"event_type,omitempty"` // the parked event's type, as read from its envelope
	Reason   string   `json:"reason"`               // 1-256 characters, no personal data
	Operator string   `json:"operator"`             // operator account id
}

func (DeadLetterDiscarded) EventType() string { return TypeDeadLetterDiscarded }
func (DeadLetterDiscarded) SchemaMajor() int  { return 1 }

// CustomerErased: the customer's personal data was erased (crypto-shredding: the
// customer's data key is deleted; read models drop what they kept). customer.erased
// v1; published only by the erasure command. Its subject is the customer; it carries
// no personal data.
type CustomerErased struct {
	Reason      string    `json:"reason"`   // a code: customer_request, retention, legal_order, ...
	Operator    string    `json:"operator"` // operator account id
	RequestedAt time.Time `json:"requested_at"`
}

func (CustomerErased) EventType() string { return TypeCustomerErased }
func (CustomerErased) SchemaMajor() int  { return 1 }

// NewPayload returns a zero payload of the Go type for an event type and major version,
// as a pointer ready to decode into. Older versions of an evolved type keep their Go
// type (RechargeCompletedV1) for the door's strict decode; consumers decode with Decode,
// which upcasts to the current version.
func NewPayload(eventType string, major int) (Payload, bool) {
	if eventType == TypeRechargeCompleted {
		switch major {
		case 1:
			return &RechargeCompletedV1{}, true
		case 2:
			return &RechargeCompleted{}, true
		}
		return nil, false
	}
	if major != 1 {
		return nil, false
	}
	switch eventType {
	case TypeCustomerRegistered:
		return &CustomerRegistered{}, true
	case TypeCustomerUpdated:
		return &CustomerUpdated{}, true
	case TypePlanChanged:
		return &PlanChanged{}, true
	case TypeStoreVisited:
		return &StoreVisited{}, true
	case TypeCallCompleted:
		return &CallCompleted{}, true
	case TypeRechargeReversed:
		return &RechargeReversed{}, true
	case TypeBillIssued:
		return &BillIssued{}, true
	case TypeBillAdjusted:
		return &BillAdjusted{}, true
	case TypeBillPaid:
		return &BillPaid{}, true
	case TypeComplaintOpened:
		return &ComplaintOpened{}, true
	case TypeComplaintResolved:
		return &ComplaintResolved{}, true
	case TypeUsageSummarized:
		return &UsageSummarized{}, true
	case TypeNetworkIncident:
		return &NetworkIncident{}, true
	case TypeSurveyAnswered:
		return &SurveyAnswered{}, true
	case TypeOfferPresented:
		return &OfferPresented{}, true
	case TypeOfferAccepted:
		return &OfferAccepted{}, true
	case TypePointsRedeemed:
		return &PointsRedeemed{}, true
	case TypeDeviceChanged:
		return &DeviceChanged{}, true
	case TypePortOutRequested:
		return &PortOutRequested{}, true
	case TypeSubscriptionTerminated:
		return &SubscriptionTerminated{}, true
	case TypeEventRetracted:
		return &EventRetracted{}, true
	case TypeClockTicked:
		return &ClockTicked{}, true
	case TypeDeadLetterDiscarded:
		return &DeadLetterDiscarded{}, true
	case TypeLoyaltyRulesActivated:
		return &LoyaltyRulesActivated{}, true
	case TypePointsAdjusted:
		return &PointsAdjusted{}, true
	case TypeChurnModelActivated:
		return &ChurnModelActivated{}, true
	case TypeAlertAcknowledged:
		return &AlertAcknowledged{}, true
	case TypeAlertClosed:
		return &AlertClosed{}, true
	case TypeCustomerErased:
		return &CustomerErased{}, true
	}
	return nil, false
}
