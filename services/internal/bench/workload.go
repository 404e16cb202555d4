package bench

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/schemas"
)

// Event times are pinned: generated events happen between epoch and epoch+span, and
// the doors validate them against pinnedNow, so the same seed gives the same events
// whatever the date of the run.
var (
	shanghai = time.FixedZone("CST", 8*3600)
	epoch    = time.Date(2026, 10, 1, 0, 0, 0, 0, shanghai)
)

const span = 25 * 24 * time.Hour

// pinnedNow is the clock of the doors' time-bound checks: just after the last event.
func pinnedNow() time.Time { return epoch.Add(span + time.Hour) }

// Channel sources (deploy/channels.json). Each event type comes from the channel that
// produces it in the field, so the gateway accepts it with that channel's key.
const (
	srcStore      = "urn:touchstream:channel:store"
	srcCallcenter = "urn:touchstream:channel:callcenter"
	srcOnline     = "urn:touchstream:channel:online"
	srcRecharge   = "urn:touchstream:channel:recharge"
	srcBilling    = "urn:touchstream:channel:billing"
	srcImport     = "urn:touchstream:channel:crm-import"
)

// kind is a kind of generated event.
type kind int

const (
	kRecharge kind = iota
	kBillIssued
	kBillPaid
	kCall
	kUsage
	kStoreVisit
	kComplaintOpened
	kComplaintResolved
	kCustomerUpdated
	kPlanChanged
)

type weighted struct {
	k kind
	w int
}

// activityMix is what customers do after registering, in percent. Personal fields
// appear in customer.updated and in half of the complaints (their description).
var activityMix = []weighted{
	{kRecharge, 28}, {kBillIssued, 10}, {kBillPaid, 10}, {kCall, 14}, {kUsage, 20},
	{kStoreVisit, 6}, {kComplaintOpened, 3}, {kComplaintResolved, 3}, {kCustomerUpdated, 4}, {kPlanChanged, 2},
}

// plainMix is the activity mix of types without any personal field in their schema
// (complaint.opened has one, its description, even when it is left out).
var plainMix = []weighted{
	{kRecharge, 30}, {kBillIssued, 12}, {kBillPaid, 12}, {kCall, 16}, {kUsage, 22},
	{kStoreVisit, 6}, {kComplaintResolved, 2},
}

// generator makes events reproducibly: the same seed and stream give the same events,
// ids included (UUIDv7-shaped, from the event time and the generator's randomness).
type generator struct {
	rng    *rand.Rand
	source string // when set, every event's source (one channel sends everything)
}

func newGenerator(seed uint64, stream uint64) *generator {
	return &generator{rng: rand.New(rand.NewPCG(seed, stream))}
}

// customerID is the opaque id of customer i.
func customerID(i int) string { return fmt.Sprintf("C%09d", i) }

func (g *generator) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *generator) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.rng.IntN(10))
	}
	return string(b)
}

// id returns a UUIDv7-shaped id: the event time in milliseconds, then random bits.
func (g *generator) id(at time.Time) string {
	var u [16]byte
	ms := uint64(at.UnixMilli())
	binary.BigEndian.PutUint64(u[8:], g.rng.Uint64())
	r := g.rng.Uint64()
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6], u[7] = byte(r)&0x0f|0x70, byte(r>>8)
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

func (g *generator) event(source, customer string, at time.Time, p events.Payload) *events.Event {
	data, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("bench: encode %s: %v", p.EventType(), err)) // generated payloads always encode
	}
	if g.source != "" {
		source = g.source
	}
	return &events.Event{ID: g.id(at), Source: source, Type: p.EventType(), Subject: customer, Time: at,
		DataSchema: schemas.URI(p.EventType(), p.SchemaMajor()), Data: data}
}

var (
	surnames  = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭"}
	givens    = []string{"伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"}
	provinces = []string{"广东省深圳市福田区", "广东省广州市天河区", "北京市朝阳区", "上海市浦东新区", "浙江省杭州市西湖区", "四川省成都市武侯区"}
	streets   = []string{"深南大道", "中山路", "人民路", "解放路", "建设路", "和平街"}
	regions   = []string{"CN-GD-SZ", "CN-GD-GZ", "CN-BJ", "CN-SH", "CN-ZJ-HZ", "CN-SC-CD"}
	segments  = []string{"consumer", "youth", "senior", "sme"}
	stores    = []string{"SZ-FT-012", "GZ-TH-003", "BJ-CY-003", "SH-PD-021", "HZ-XH-007", "CD-WH-011"}
	methods   = []string{"cash", "bank_card", "wechat_pay", "alipay", "auto_debit"}
	queues    = []string{"care", "billing", "technical", "retention", "vip"}
	outcomes  = []string{"resolved", "escalated", "callback", "info", "retained"}
	plans     = []events.Plan{
		{ID: "P-58", Name: "畅享58", Kind: "prepaid", MonthlyFee: events.CNY(5800)},
		{ID: "P-128", Name: "畅享128", Kind: "postpaid", MonthlyFee: events.CNY(12800)},
		{ID: "P-199", Name: "尊享199", Kind: "postpaid", MonthlyFee: events.CNY(19900)},
		{ID: "P-19", Name: "青春19", Kind: "prepaid", MonthlyFee: events.CNY(1900)},
	}
)

func (g *generator) name() string  { return g.pick(surnames) + g.pick(givens) }
func (g *generator) phone() string { return "+861" + string(byte('3'+g.rng.IntN(7))) + g.digits(9) }
func (g *generator) address() string {
	return g.pick(provinces) + g.pick(streets) + strconv.Itoa(1+g.rng.IntN(999)) + "号"
}

// registration is customer.registered with every personal field set.
func (g *generator) registration(customer string, at time.Time) *events.Event {
	src := srcStore
	if g.rng.IntN(2) == 0 {
		src = srcOnline
	}
	p := events.CustomerRegistered{
		Name: events.Clear(g.name()), Phone: events.Clear(g.phone()), IDType: "resident_id",
		IDNumber: events.Clear("44030" + g.digits(13)), Address: events.Clear(g.address()),
		CustomerType: "individual", Segment: g.pick(segments), Region: g.pick(regions), Plan: plans[g.rng.IntN(len(plans))],
		StoreID: g.pick(stores),
	}
	if g.rng.IntN(3) == 0 {
		p.ContractEnd = "2028-06-30"
	}
	return g.event(src, customer, at, p)
}

// update is customer.updated changing one personal field (phone, address or name).
func (g *generator) update(customer string, at time.Time) *events.Event {
	var p events.CustomerUpdated
	switch g.rng.IntN(3) {
	case 0:
		p.Phone = events.Clear(g.phone())
	case 1:
		p.Address = events.Clear(g.address())
	default:
		p.Name, p.Segment = events.Clear(g.name()), g.pick(segments)
	}
	return g.event(srcOnline, customer, at, p)
}

func (g *generator) recharge(customer string, at time.Time) *events.Event {
	id, paid := "R-"+g.digits(12), events.CNY(int64(1000*(1+g.rng.IntN(20))))
	return g.event(srcRecharge, customer, at, events.RechargeCompleted{
		RechargeID: id, Amount: paid, Credited: paid, Method: g.pick(methods),
	})
}

// activity is one event of the activity mix for a registered customer; with personal
// false, of the mix without personal fields.
func (g *generator) activity(customer string, at time.Time, personal bool) *events.Event {
	mix := plainMix
	if personal {
		mix = activityMix
	}
	total := 0
	for _, w := range mix {
		total += w.w
	}
	n := g.rng.IntN(total)
	k := mix[len(mix)-1].k
	for _, w := range mix {
		if n < w.w {
			k = w.k
			break
		}
		n -= w.w
	}
	month := at.Format("2006-01")
	switch k {
	case kRecharge:
		return g.recharge(customer, at)
	case kBillIssued:
		return g.event(srcBilling, customer, at, events.BillIssued{BillID: "B-" + month + "-" + g.digits(8), Period: month,
			Amount: events.CNY(int64(1900 + g.rng.IntN(30000))), DueDate: at.AddDate(0, 0, 20).Format(time.DateOnly)})
	case kBillPaid:
		return g.event(srcRecharge, customer, at, events.BillPaid{BillID: "B-" + month + "-" + g.digits(8),
			Amount: events.CNY(int64(1900 + g.rng.IntN(30000))), Method: g.pick(methods)})
	case kCall:
		answered := g.rng.IntN(10) > 0
		handling, outcome := 60+g.rng.IntN(600), g.pick(outcomes)
		if !answered {
			handling, outcome = 0, "abandoned"
		}
		return g.event(srcCallcenter, customer, at, events.CallCompleted{CallID: "CC-" + g.digits(12), Direction: "inbound",
			Queue: g.pick(queues), WaitSeconds: g.rng.IntN(300), HandlingSeconds: handling, Answered: answered, Outcome: outcome,
			AgentID: "A" + g.digits(4)})
	case kUsage:
		day := at.Format(time.DateOnly)
		return g.event(srcBilling, customer, at, events.UsageSummarized{PeriodStart: day, PeriodEnd: day,
			VoiceMinutes: int64(g.rng.IntN(120)), DataMB: float64(g.rng.IntN(400000)) / 100, SMS: int64(g.rng.IntN(10)),
			Calls: int64(g.rng.IntN(20)), DroppedCalls: int64(g.rng.IntN(2))})
	case kStoreVisit:
		return g.event(srcStore, customer, at, events.StoreVisited{StoreID: g.pick(stores), StaffID: "E" + g.digits(4),
			Purpose: g.pick([]string{"inquiry", "purchase", "payment", "device"}), DurationSeconds: 60 + g.rng.IntN(900)})
	case kComplaintOpened:
		p := events.ComplaintOpened{ComplaintID: "CP-" + g.digits(10), Category: g.pick([]string{"network", "billing", "service"}),
			Severity: g.pick([]string{"low", "medium", "high"}), PromisedBy: at.Add(72 * time.Hour), AgentID: "A" + g.digits(4)}
		if personal && g.rng.IntN(2) == 0 {
			p.Description = events.Clear("本月账单多扣了" + strconv.Itoa(5+g.rng.IntN(50)) + "元流量费，要求退还。")
		}
		return g.event(srcCallcenter, customer, at, p)
	case kComplaintResolved:
		return g.event(srcCallcenter, customer, at, events.ComplaintResolved{ComplaintID: "CP-" + g.digits(10),
			Resolution: "resolved", Satisfaction: 1 + g.rng.IntN(5), AgentID: "A" + g.digits(4)})
	case kCustomerUpdated:
		return g.update(customer, at)
	default: // kPlanChanged
		from, to := plans[g.rng.IntN(len(plans))], plans[g.rng.IntN(len(plans))]
		return g.event(srcStore, customer, at, events.PlanChanged{From: from, To: to, Direction: "lateral", StoreID: g.pick(stores)})
	}
}

// at spreads n events evenly over the span, in order.
func at(i, n int) time.Time {
	return epoch.Add(time.Duration(float64(span) * float64(i) / float64(max(n, 1))))
}

// Streams of the generator's randomness, one per data set, so that data sets differ
// for one seed.
const (
	streamRecharge = iota + 1
	streamPersonal
	streamPlain
	streamHistory
	streamLive
)

// rechargeSet is n recharge.completed events over customers, all under one source
// (the bulk channel, which has no rate limit, so the gateway can take them all).
func rechargeSet(seed uint64, n, customers int) []*events.Event {
	g := newGenerator(seed, streamRecharge)
	g.source = srcImport
	out := make([]*events.Event, n)
	for i := range out {
		out[i] = g.recharge(customerID(g.rng.IntN(customers)), at(i, n))
	}
	return out
}

// personalSet is n events over customers: 30% customer.registered (four personal
// fields), 20% customer.updated (one), 50% activity without personal fields.
func personalSet(seed uint64, n, customers int) []*events.Event {
	g := newGenerator(seed, streamPersonal)
	out := make([]*events.Event, n)
	for i := range out {
		c, t := customerID(g.rng.IntN(customers)), at(i, n)
		switch r := g.rng.IntN(10); {
		case r < 3:
			out[i] = g.registration(c, t)
		case r < 5:
			out[i] = g.update(c, t)
		default:
			out[i] = g.activity(c, t, false)
		}
	}
	return out
}

// plainSet is n activity events over customers, none with a personal field.
func plainSet(seed uint64, n, customers int) []*events.Event {
	g := newGenerator(seed, streamPlain)
	out := make([]*events.Event, n)
	for i := range out {
		out[i] = g.activity(customerID(g.rng.IntN(customers)), at(i, n), false)
	}
	return out
}

// history generates a log of n events over customers in stream order: exactly one
// customer.registered per customer, spread through the log, and activity (the
// activityMix) of customers already registered, so a customer's registration always
// precedes its activity and early customers have more history, as in a real log.
type history struct {
	g          *generator
	n          int
	customers  int
	i          int
	registered int
}

func newHistory(seed uint64, n, customers int) *history {
	return &history{g: newGenerator(seed, streamHistory), n: max(n, customers), customers: customers}
}

// next returns the next event, or nil at the end.
func (h *history) next() *events.Event {
	if h.i >= h.n {
		return nil
	}
	t := at(h.i, h.n)
	left := h.n - h.i
	toRegister := h.customers - h.registered
	h.i++
	// Register with probability toRegister/left: exactly customers registrations by the end.
	if toRegister > 0 && (h.registered == 0 || h.g.rng.IntN(left) < toRegister) {
		h.registered++
		return h.g.registration(customerID(h.registered-1), t)
	}
	return h.g.activity(customerID(h.g.rng.IntN(h.registered)), t, true)
}

// live generates activity of random customers of the population, stamped now.
type live struct {
	g         *generator
	customers int
}

func newLive(seed uint64, customers int) *live {
	return &live{g: newGenerator(seed, streamLive), customers: customers}
}

func (l *live) next(now time.Time) *events.Event {
	return l.g.activity(customerID(l.g.rng.IntN(l.customers)), now, true)
}
