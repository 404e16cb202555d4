package simulate

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

// flat is a draft in comparable form.
type flat struct {
	ID, Customer, Channel, Type string
	At                          time.Time
	Data                        string
}

func flatten(t testing.TB, d *Draft) flat {
	t.Helper()
	b, err := json.Marshal(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return flat{ID: d.ID, Customer: d.Customer, Channel: d.Channel, Type: d.Payload.EventType(), At: d.At, Data: string(b)}
}

func drafts(t testing.TB, p *Params, seed uint64, customers, days int) []flat {
	t.Helper()
	var out []flat
	history(t, p, seed, customers, days, true, func(d *Draft) { out = append(out, flatten(t, d)) })
	return out
}

func TestDeterministic(t *testing.T) {
	p := params(t)
	a := drafts(t, p, 42, 1500, 20)
	b := drafts(t, p, 42, 1500, 20)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different streams (-first +second):\n%s", diff)
	}
	c := drafts(t, p, 43, 1500, 20)
	// Another seed: other customers, other events, other ids.
	ids := map[string]bool{}
	custs := map[string]bool{}
	for _, f := range a {
		ids[f.ID], custs[f.Customer] = true, true
	}
	sameID, sameCust, sameData := 0, 0, 0
	for i, f := range c {
		if ids[f.ID] {
			sameID++
		}
		if custs[f.Customer] {
			sameCust++
		}
		if i < len(a) && a[i].Data == f.Data {
			sameData++
		}
	}
	if sameID > 0 || sameCust > len(c)/100 || sameData > len(c)/2 {
		t.Errorf("seeds 42 and 43: %d shared event ids, %d events of shared customers, %d identical payloads of %d", sameID, sameCust, sameData, len(c))
	}
	if len(a) < 30_000 {
		t.Errorf("only %d events for 1500 customers over 20 days", len(a))
	}
}

var (
	customerIDPattern = regexp.MustCompile(`^C[0-9]{12}$`)
	eventIDPattern    = regexp.MustCompile(`^sim-42-[0-9]+-[0-9]+$`)
)

// TestStreamOrder: each customer's registration comes first, then their events in
// time order; the whole stream is in time order; ids are unique and opaque.
func TestStreamOrder(t *testing.T) {
	p := params(t)
	seen := map[string]time.Time{}
	ids := map[string]bool{}
	var last time.Time
	n := 0
	history(t, p, 42, 2000, 25, true, func(d *Draft) {
		n++
		if d.At.Before(last) {
			t.Fatalf("event %s at %s before the previous one at %s", d.ID, d.At, last)
		}
		last = d.At
		if ids[d.ID] {
			t.Fatalf("event id %s twice", d.ID)
		}
		ids[d.ID] = true
		if !customerIDPattern.MatchString(d.Customer) || !eventIDPattern.MatchString(d.ID) {
			t.Fatalf("customer id %q, event id %q: want C and 12 digits, sim-<seed>-<n>-<n>", d.Customer, d.ID)
		}
		prev, known := seen[d.Customer]
		if !known && d.Payload.EventType() != events.TypeCustomerRegistered {
			t.Fatalf("first event of %s is %s, want customer.registered", d.Customer, d.Payload.EventType())
		}
		if known && d.Payload.EventType() == events.TypeCustomerRegistered {
			t.Fatalf("%s registered twice", d.Customer)
		}
		if d.At.Before(prev) {
			t.Fatalf("events of %s out of order", d.Customer)
		}
		seen[d.Customer] = d.At
	})
	if !last.Before(fixedNow) {
		t.Errorf("history reaches %s, want before its end %s", last, fixedNow)
	}
	t.Logf("%d events of %d customers", n, len(seen))
}

// producedTypes are the types the simulator produces: every type of the catalog but
// the two no channel may write (points.redeemed: the redemption service;
// clock.ticked: the scheduler).
var producedTypes = []string{
	"bill.adjusted", "bill.issued", "bill.paid", "call.completed", "complaint.opened", "complaint.resolved",
	"customer.registered", "customer.updated", "device.changed", "event.retracted", "network.incident",
	"number.port_out_requested", "offer.accepted", "offer.presented", "plan.changed", "recharge.completed",
	"recharge.reversed", "store.visited", "subscription.terminated", "survey.answered", "usage.summarized",
}

// checkEvents validates every event against the contract as the gateway would (per
// channel late-arrival limit, the channel's source and rights), returning counts by
// type.
func checkEvents(t *testing.T, chs map[string]*Channel, evs []*events.Event, channelOf []string, now time.Time) map[string]int {
	t.Helper()
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	validators := map[string]*events.Validator{}
	counts := map[string]int{}
	failures := 0
	for i, e := range evs {
		ch := chs[channelOf[i]]
		v := validators[ch.Name]
		if v == nil {
			limits := events.DefaultLimits()
			if ch.MaxAge > 0 {
				limits.MaxAge = ch.MaxAge
			}
			v = events.NewValidator(cat, events.DefaultLayout().Partitions, limits, func() time.Time { return now })
			validators[ch.Name] = v
		}
		counts[e.Type]++
		var problems []string
		if _, err := v.CheckInput(e); err != nil {
			problems = append(problems, err.Error())
		}
		if e.Source != ch.Source || !ch.Allows(e.Type) {
			problems = append(problems, "channel "+ch.Name+" may not write it")
		}
		if len(problems) > 0 {
			failures++
			if failures <= 10 {
				t.Errorf("%s %s via %s: %s", e.Type, e.ID, ch.Name, strings.Join(problems, "; "))
			}
		}
	}
	if failures > 0 {
		t.Fatalf("%d of %d events invalid", failures, len(evs))
	}
	return counts
}

func TestEveryTypeValidatesHistory(t *testing.T) {
	p := params(t)
	chs := map[string]*Channel{}
	for _, c := range channels(t, p) {
		chs[c.Name] = &c
	}
	loc, _ := p.Location()
	st := newStamper(false, nil, loc, chs)
	var evs []*events.Event
	var via []string
	// 45 days: the oldest part goes through the history channel (crm-import).
	history(t, p, 42, 6000, 45, true, func(d *Draft) {
		e, err := st.stamp(d)
		if err != nil || e == nil {
			t.Fatalf("stamp %s: %v", d.ID, err)
		}
		evs, via = append(evs, e), append(via, d.Channel)
	})
	counts := checkEvents(t, chs, evs, via, fixedNow)
	checkCoverage(t, counts)
	if n := slices.Index(via, p.HistoryChannel); n < 0 {
		t.Errorf("no event went through the history channel %s", p.HistoryChannel)
	}
	t.Logf("%d events valid: %v", len(evs), counts)
}

func TestEveryTypeValidatesLive(t *testing.T) {
	p := params(t)
	chs := map[string]*Channel{}
	list := channels(t, p)
	for i := range list {
		chs[list[i].Name] = &list[i]
	}
	loc, _ := p.Location()
	// A clock that advances 40 ms an event, over two calendar days, so that the
	// calendar rules (one summary a day, one bill a month) are exercised.
	clock := time.Date(2026, 11, 30, 18, 0, 0, 0, loc)
	now := func() time.Time { clock = clock.Add(40 * time.Millisecond); return clock }
	st := newStamper(true, now, loc, chs)
	g, err := NewGenerator(GeneratorConfig{Params: p, Channels: list, Seed: 42, Customers: 3000, Start: clock})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*events.Event
	var via []string
	dropped := 0
	perDay := map[string]int{}
	for len(evs) < 800_000 && clock.Before(time.Date(2026, 12, 2, 12, 0, 0, 0, loc)) {
		d, _ := g.Next()
		e, err := st.stamp(d)
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			dropped++
			continue
		}
		if u, ok := d.Payload.(*events.UsageSummarized); ok {
			var got events.UsageSummarized
			if err := json.Unmarshal(e.Data, &got); err != nil {
				t.Fatal(err)
			}
			perDay[d.Customer+got.PeriodStart]++
			if got.PeriodStart >= e.Time.Format(time.DateOnly) {
				t.Fatalf("usage of %s summarized on %s", got.PeriodStart, e.Time)
			}
			_ = u
		}
		evs, via = append(evs, e), append(via, d.Channel)
	}
	for k, n := range perDay {
		if n > 1 {
			t.Fatalf("%d usage summaries for %s", n, k)
		}
	}
	counts := checkEvents(t, chs, evs, via, clock)
	t.Logf("%d live events valid over %s (%d dropped by the calendar rules): %v", len(evs), clock.Sub(evs[0].Time).Round(time.Minute), dropped, counts)
	for _, typ := range []string{"usage.summarized", "bill.issued", "bill.paid", "complaint.opened", "network.incident", "subscription.terminated"} {
		if counts[typ] == 0 {
			t.Errorf("no %s in live mode", typ)
		}
	}
}

func checkCoverage(t *testing.T, counts map[string]int) {
	t.Helper()
	for _, typ := range producedTypes {
		if counts[typ] < 3 {
			t.Errorf("%s: %d events, want a sample of at least 3", typ, counts[typ])
		}
	}
	for typ := range counts {
		if !slices.Contains(producedTypes, typ) {
			t.Errorf("unexpected type %s", typ)
		}
	}
}

// TestPersonalData: identities look real and are well-formed, and none leaks into
// what is stored in clear (ids, references, retraction reasons).
func TestPersonalData(t *testing.T) {
	p := params(t)
	phone := regexp.MustCompile(`^\+861[3-9][0-9]{9}$`)
	var regs []*events.CustomerRegistered
	var clearText []string
	history(t, p, 5, 3000, 3, true, func(d *Draft) {
		clearText = append(clearText, d.ID, d.Customer)
		switch pl := d.Payload.(type) {
		case *events.CustomerRegistered:
			regs = append(regs, pl)
		case *events.EventRetracted:
			clearText = append(clearText, pl.Reason)
		}
	})
	phones := map[string]bool{}
	for _, r := range regs {
		ph := r.Phone.Reveal()
		if !phone.MatchString(ph) || phones[ph] {
			t.Fatalf("phone %q: want a unique +86 mobile number", ph)
		}
		phones[ph] = true
		id := r.IDNumber.Reveal()
		switch r.IDType {
		case "resident_id":
			if !validResidentID(id) {
				t.Errorf("resident id %q: bad check digit", id)
			}
		case "business_license":
			if len(id) != 18 || r.CustomerType != "enterprise" {
				t.Errorf("business licence %q of a %s customer", id, r.CustomerType)
			}
		case "":
			if r.DealerID == "" {
				t.Errorf("a customer without id registered by %q, not a dealer", r.StoreID)
			}
		}
		if n := []rune(r.Name.Reveal()); len(n) < 2 {
			t.Errorf("name %q too short", r.Name.Reveal())
		}
	}
	for _, s := range clearText {
		for ph := range phones {
			if strings.Contains(s, ph[3:]) {
				t.Fatalf("clear text %q contains a phone number", s)
			}
		}
	}
	if len(regs) < 3000 {
		t.Errorf("%d registrations, want the 3000 of the initial population at least", len(regs))
	}
}

func validResidentID(s string) bool {
	if len(s) != 18 {
		return false
	}
	sum := 0
	for k := range 17 {
		if s[k] < '0' || s[k] > '9' {
			return false
		}
		sum += int(s[k]-'0') * idWeights[k]
	}
	return s[17] == idChecks[sum%11]
}
