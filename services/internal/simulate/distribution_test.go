package simulate

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
)

// population measures what a history says about spend, usage and the call center,
// counting retracted events out as a read model would.
type population struct {
	from, to  time.Time
	revenue   map[string]float64 // recharges less reversals, and bills, CNY
	recharges map[string][]dated
	usage     map[string][]dated // voice minutes + data GB, per day
	care      map[string][]time.Time
	calls     map[string]callRec // inbound calls by event id
	retracted map[string]bool
	voice     float64
	dataMB    float64
	usageDays int
}

type dated struct {
	at time.Time
	v  float64
}

type callRec struct {
	wait     int
	answered bool
}

func newPopulation(from, to time.Time) *population {
	return &population{from: from, to: to, revenue: map[string]float64{}, recharges: map[string][]dated{},
		usage: map[string][]dated{}, care: map[string][]time.Time{}, calls: map[string]callRec{}, retracted: map[string]bool{}}
}

// retractedRecharges are recharge event ids with their customer and amount, applied
// once the retractions are known.
func (m *population) add(d *Draft, pending map[string]dated, pendingCust map[string]string) {
	switch p := d.Payload.(type) {
	case *events.RechargeCompleted:
		pending[d.ID] = dated{d.At, float64(p.Amount.Fen) / 100}
		pendingCust[d.ID] = d.Customer
	case *events.RechargeReversed:
		m.revenue[d.Customer] -= float64(p.Amount.Fen) / 100
	case *events.BillIssued:
		m.revenue[d.Customer] += float64(p.Amount.Fen) / 100
	case *events.UsageSummarized:
		m.voice += float64(p.VoiceMinutes)
		m.dataMB += p.DataMB
		m.usageDays++
		m.usage[d.Customer] = append(m.usage[d.Customer], dated{d.At, float64(p.VoiceMinutes) + p.DataMB/1024})
	case *events.CallCompleted:
		if p.Direction == "inbound" {
			m.calls[d.ID] = callRec{wait: p.WaitSeconds, answered: p.Answered}
			m.care[d.Customer] = append(m.care[d.Customer], d.At)
		}
	case *events.ComplaintOpened:
		m.care[d.Customer] = append(m.care[d.Customer], d.At)
	case *events.EventRetracted:
		m.retracted[p.Target.ID] = true
	}
}

// measure generates a history and folds it.
func measure(t *testing.T, p *Params, seed uint64, customers, days int) (*population, []Truth) {
	t.Helper()
	from := fixedNow.AddDate(0, 0, -days)
	m := newPopulation(from, fixedNow)
	pending, pendingCust := map[string]dated{}, map[string]string{}
	g := history(t, p, seed, customers, days, false, func(d *Draft) { m.add(d, pending, pendingCust) })
	for id, r := range pending {
		if m.retracted[id] {
			continue
		}
		c := pendingCust[id]
		m.revenue[c] += r.v
		m.recharges[c] = append(m.recharges[c], r)
	}
	for id := range m.retracted {
		delete(m.calls, id)
	}
	return m, g.Truth()
}

// activeMonths is how long a customer was active within the window, in months.
func (m *population) activeMonths(c Truth) float64 {
	lo, hi := m.from, m.to
	if c.RegisteredAt.After(lo) {
		lo = c.RegisteredAt
	}
	if !c.TerminatedAt.IsZero() && c.TerminatedAt.Before(hi) {
		hi = c.TerminatedAt
	}
	return max(0, hi.Sub(lo).Hours()/24/daysPerMonth)
}

func TestDistribution(t *testing.T) {
	p := params(t)
	const customers, days = 20_000, 90
	m, truth := measure(t, p, 7, customers, days)

	var revenue, months float64
	var spends []float64
	big := 0
	for _, c := range truth {
		am := m.activeMonths(c)
		revenue += m.revenue[c.Customer]
		months += am
		if am < 1 {
			continue // too short to say what they spend a month
		}
		s := m.revenue[c.Customer] / am
		spends = append(spends, s)
		if s >= p.Calibration.BigCustomerCNY {
			big++
		}
	}
	arpu := revenue / months
	slices.Sort(spends)
	slices.Reverse(spends)
	var total, top float64
	for i, s := range spends {
		total += s
		if i < len(spends)/5 {
			top += s
		}
	}
	topShare := top / total
	answered20, inbound, abandoned := 0, 0, 0
	for _, c := range m.calls {
		inbound++
		if c.answered && c.wait <= 20 {
			answered20++
		}
		if !c.answered {
			abandoned++
		}
	}
	in20 := float64(answered20) / float64(inbound)
	voice := m.voice / float64(m.usageDays) * daysPerMonth
	dataGB := m.dataMB / 1024 / float64(m.usageDays) * daysPerMonth
	t.Logf("customers %d (measured %d), ARPU %.2f CNY, top 20%% bring %.1f%% of revenue, %d spend >= %.0f CNY a month",
		len(truth), len(spends), arpu, 100*topShare, big, p.Calibration.BigCustomerCNY)
	t.Logf("voice %.1f min/month, data %.2f GB/month; %d inbound calls, %.1f%% answered within 20 s, %.1f%% unanswered",
		voice, dataGB, inbound, 100*in20, 100*float64(abandoned)/float64(inbound))

	within := func(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }
	checks := []struct {
		name string
		ok   bool
		got  float64
	}{
		{"mean monthly spend within 20% of 49 CNY", within(arpu, 49, 0.2), arpu},
		{"mean monthly spend within 20% of the calibration ARPU", within(arpu, p.Calibration.ARPUCNY, 0.2), arpu},
		{"top 20% of customers bring 65-90% of revenue", topShare >= 0.65 && topShare <= 0.9, topShare},
		{"a few big customers (0.01-2%)", big > 0 && float64(big) < 0.02*float64(len(spends)), float64(big)},
		{"20-second answer share 75-92%", in20 >= 0.75 && in20 <= 0.92, in20},
		{"voice minutes within 15% of the calibration", within(voice, p.Calibration.VoiceMinutesPerMonth, 0.15), voice},
		{"data within 15% of the calibration", within(dataGB, p.Calibration.DataGBPerMonth, 0.15), dataGB},
		{"some abandonment (2-12%)", abandoned > inbound/50 && abandoned < inbound*12/100, float64(abandoned) / float64(inbound)},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %.4g", c.name, c.got)
		}
	}
}

// TestDriftIsGradual follows customers who drift and then leave: their recharges and
// usage fall over weeks against their own baseline, their care contacts rise, and the
// fall is gradual (each quarter of the drift below the one before), not a switch.
func TestDriftIsGradual(t *testing.T) {
	p := params(t)
	const customers, days = 10_000, 180
	m, truth := measure(t, p, 11, customers, days)
	const window = 28 * day
	sum := func(xs []dated, lo, hi time.Time) float64 {
		s := 0.0
		for _, x := range xs {
			if !x.at.Before(lo) && x.at.Before(hi) {
				s += x.v
			}
		}
		return s
	}
	count := func(ts []time.Time, lo, hi time.Time) float64 {
		n := 0.0
		for _, x := range ts {
			if !x.Before(lo) && x.Before(hi) {
				n++
			}
		}
		return n
	}
	var leavers, prepaid int
	var rechargeFirst, rechargeLast, usageFirst, usageLast, careFirst, careLast float64
	quarters := make([]float64, 4)
	for _, c := range truth {
		leaving := c.Outcome == "port_out" || c.Outcome == "customer_request" || c.Outcome == "non_payment"
		if c.DriftStart.IsZero() || !leaving || c.Retained || c.DriftStart.Before(m.from.Add(window)) || c.DriftEnd.After(m.to) ||
			c.RegisteredAt.After(c.DriftStart.Add(-window)) {
			continue
		}
		leavers++
		first := c.DriftStart.Add(-window)
		usageFirst += sum(m.usage[c.Customer], first, c.DriftStart)
		usageLast += sum(m.usage[c.Customer], c.DriftEnd.Add(-window), c.DriftEnd)
		careFirst += count(m.care[c.Customer], first, c.DriftStart)
		careLast += count(m.care[c.Customer], c.DriftEnd.Add(-window), c.DriftEnd)
		q := c.DriftEnd.Sub(c.DriftStart) / 4
		for i := range quarters {
			lo := c.DriftStart.Add(time.Duration(i) * q)
			quarters[i] += sum(m.usage[c.Customer], lo, lo.Add(q)) / q.Hours()
		}
		if c.Prepaid {
			prepaid++
			rechargeFirst += sum(m.recharges[c.Customer], first, c.DriftStart)
			rechargeLast += sum(m.recharges[c.Customer], c.DriftEnd.Add(-window), c.DriftEnd)
		}
	}
	t.Logf("%d leavers (%d prepaid) drifting within the window: recharges %.0f -> %.0f CNY, usage %.0f -> %.0f, care contacts %.0f -> %.0f (4 weeks before the drift -> its last 4 weeks)",
		leavers, prepaid, rechargeFirst, rechargeLast, usageFirst, usageLast, careFirst, careLast)
	t.Logf("usage per hour by quarter of the drift: %.1f %.1f %.1f %.1f", quarters[0], quarters[1], quarters[2], quarters[3])
	if leavers < 100 || prepaid < 50 {
		t.Fatalf("too few drifting leavers to judge: %d (%d prepaid)", leavers, prepaid)
	}
	if !(rechargeLast < 0.7*rechargeFirst) {
		t.Errorf("recharges in the last 4 weeks %.0f CNY, want well below the 4 weeks before the drift %.0f", rechargeLast, rechargeFirst)
	}
	if !(usageLast < 0.7*usageFirst) {
		t.Errorf("usage in the last 4 weeks %.0f, want well below %.0f", usageLast, usageFirst)
	}
	if !(careLast > 1.5*careFirst) {
		t.Errorf("care calls and complaints in the last 4 weeks %.0f, want well above %.0f", careLast, careFirst)
	}
	for i := 1; i < len(quarters); i++ {
		if !(quarters[i] < quarters[i-1]) {
			t.Errorf("usage does not fall gradually over the drift: quarter %d %.1f >= quarter %d %.1f", i+1, quarters[i], i, quarters[i-1])
		}
	}
}
