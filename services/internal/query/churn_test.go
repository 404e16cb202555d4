package query_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/query"
)

var cst = time.FixedZone("CST", 8*3600)

// Sources of the desk fixture's events.
const (
	srcCallCenter = "urn:touchstream:channel:callcenter"
	srcNumbering  = "urn:touchstream:channel:numbering"
	churnRegion   = "CN-ZJ-HZ"
)

// Customers of the desk fixture: two drifting with open alerts, one steady, one
// drifting then terminated (its alert closed as churned), one with complaints.
const (
	drift1   = "C-CH-1"
	drift2   = "C-CH-2"
	steady   = "C-CH-3"
	churned  = "C-CH-4"
	slClient = "C-SL-1"
)

// deskFixture is the fixture's log plus churn and service-level events, folded by
// the churn and service-level projections.
type deskFixture struct {
	*fixture
	desk *projections.Runner
	pub  *events.Publisher
	day  time.Time // local midnight (CST) of the call center day
}

func newDeskFixture(t *testing.T) *deskFixture {
	t.Helper()
	f := newFixture(t)
	// The call center day: late enough that no event of the fixture's moves a
	// partition's time past its deadlines, early enough to be in the past.
	b5 := f.base.Add(5 * 24 * time.Hour).In(cst)
	day := time.Date(b5.Year(), b5.Month(), b5.Day(), 0, 0, 0, 0, cst)
	// Drifting takes months of history: published past the late-arrival limit, as an
	// import would be.
	pub, err := events.NewPublisher(t.Context(), f.nc, events.WithLayout(f.layout), events.WithKeys(f.keys),
		events.WithLimits(events.Limits{MaxSize: 64 << 10, MaxFuture: 5 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	evs := deskEvents(t, day)
	for i, r := range pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d (%s): %v", i, evs[i].Type, r.Err)
		}
	}
	_ = pub.Close()
	b, err := os.ReadFile("../../../deploy/churn-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := features.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := churn.New(churn.Options{Target: query.DefaultChurnTarget, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := servicelevel.New(servicelevel.Options{Target: query.DefaultServiceLevelTarget})
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := events.DefaultCatalog()
	r, err := projections.NewRunner(projections.Config{Group: "desk-test"}, projections.Deps{Pool: f.pool, JS: f.js, Layout: f.layout,
		Catalog: cat, Log: slog.New(slog.DiscardHandler),
		History: &projections.LogHistory{Index: &timeline.Index{Target: timelineTarget, Layout: f.layout}, JS: f.js, Decoder: projections.NewDecoder(f.layout, cat)}}, cp, sp)
	if err != nil {
		t.Fatal(err)
	}
	d := &deskFixture{fixture: f, desk: r, day: day}
	d.fold(t)
	d.pub, err = events.NewPublisher(t.Context(), f.nc, events.WithLayout(f.layout), events.WithKeys(f.keys))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.pub.Close() })
	f.serve(t, query.Config{Tiers: valuetier.Default().Names()}, query.Deps{Commands: d.pub})
	return d
}

func (d *deskFixture) fold(t *testing.T) {
	t.Helper()
	if err := d.desk.CatchUp(t.Context(), nil); err != nil {
		t.Fatalf("catch up: %v", err)
	}
}

// deskEvents: customers drifting away as projections/churn's tests make them (weekly
// recharges from June, then silence, a retention call and a port-out request), a
// steady one, and one call center hour with a known answer rate and complaints.
func deskEvents(t *testing.T, day time.Time) []*events.Event {
	t.Helper()
	var evs []*events.Event
	add := func(customer, source string, at time.Time, p events.Payload) {
		e, err := events.NewEvent(customer, at, p)
		if err != nil {
			t.Fatal(err)
		}
		e.Source = source
		evs = append(evs, e)
	}
	customer := func(c string, drifts bool) {
		add(c, srcStore, time.Date(2026, 6, 1, 10, 0, 0, 0, cst), events.CustomerRegistered{
			Name: events.Clear("测试"), Phone: events.Clear("13800138000"), CustomerType: "individual", Segment: "youth", Region: churnRegion,
			Plan: events.Plan{ID: "PRE-59", Name: "59元畅享卡", Kind: "prepaid", MonthlyFee: events.CNY(5900)}})
		last := 90
		if !drifts {
			last = 110
		}
		for d := 0; d < last; d += 7 {
			add(c, srcRecharge, time.Date(2026, 6, 2, 12, 0, 0, 0, cst).AddDate(0, 0, d), events.RechargeCompleted{
				RechargeID: fmt.Sprintf("%s-R%d", c, d), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"})
		}
		if drifts {
			add(c, srcCallCenter, time.Date(2026, 9, 10, 9, 0, 0, 0, cst), events.CallCompleted{CallID: c + "-CALL1", Direction: "inbound",
				Queue: "retention", WaitSeconds: 12, HandlingSeconds: 300, Answered: true, Outcome: "resolved"})
			add(c, srcNumbering, time.Date(2026, 9, 12, 9, 0, 0, 0, cst), events.PortOutRequested{RequestID: c + "-PO1", TargetOperator: "unicom", Reason: "price"})
		}
	}
	customer(drift1, true)
	customer(drift2, true)
	customer(steady, false)
	customer(churned, true)
	end := time.Date(2026, 9, 13, 10, 0, 0, 0, cst)
	add(churned, srcNumbering, end, events.SubscriptionTerminated{Reason: "port_out", EffectiveAt: end})

	// 10:00-11:00 of the day: 20 inbound calls to care, 17 answered within 20 s, one
	// answered after 40 s, two abandoned; one outbound; one inbound to billing.
	hour := day.Add(10 * time.Hour)
	for i := range 20 {
		c := events.CallCompleted{CallID: fmt.Sprintf("SL-CALL-%02d", i), Direction: "inbound", Queue: "care", Outcome: "resolved",
			WaitSeconds: 5 + i%10, Answered: true, HandlingSeconds: 120}
		switch i {
		case 17:
			c.WaitSeconds = 40
		case 18, 19:
			c.WaitSeconds, c.Answered, c.HandlingSeconds, c.Outcome = 60, false, 0, "abandoned"
		}
		add(slClient, srcCallCenter, hour.Add(time.Duration(i)*time.Minute), c)
	}
	add(slClient, srcCallCenter, hour.Add(30*time.Minute), events.CallCompleted{CallID: "SL-OUT-1", Direction: "outbound", Queue: "care",
		Answered: true, HandlingSeconds: 90, Outcome: "sale"})
	add(slClient, srcCallCenter, hour.Add(40*time.Minute), events.CallCompleted{CallID: "SL-BILL-1", Direction: "inbound", Queue: "billing",
		WaitSeconds: 10, Answered: true, HandlingSeconds: 60, Outcome: "resolved"})
	// Two complaints: one due the next day, one due at noon and still open at 14:00.
	add(slClient, srcCallCenter, hour.Add(45*time.Minute), events.ComplaintOpened{ComplaintID: "SL-CMP-1", Category: "network", Severity: "high",
		PromisedBy: hour.Add(24 * time.Hour)})
	add(slClient, srcCallCenter, hour.Add(50*time.Minute), events.ComplaintOpened{ComplaintID: "SL-CMP-2", Category: "billing", Severity: "medium",
		PromisedBy: hour.Add(2 * time.Hour)})
	add(slClient, srcCallCenter, hour.Add(4*time.Hour), events.CallCompleted{CallID: "SL-TECH-1", Direction: "inbound", Queue: "technical",
		WaitSeconds: 3, Answered: true, HandlingSeconds: 30, Outcome: "resolved"})
	return evs
}

// post sends a command and validates the answer against the document.
func (f *fixture) post(t testing.TB, path, body string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	authorize(req, header)
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, body: b}
	f.doc.Conform(t, req, []byte(body), r.status, r.header, r.body)
	return r
}

// scores walks the score list page by page.
func (d *deskFixture) scores(t *testing.T, filter string, limit int) []churn.ScoreRow {
	t.Helper()
	var all []churn.ScoreRow
	path := fmt.Sprintf("/v1/churn/scores?%s&limit=%d", filter, limit)
	for pages := 0; ; pages++ {
		r := d.get(t, path, nil)
		if r.status != http.StatusOK || pages > 100 {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		page := decode[query.ChurnScoresResponse](t, r)
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			return all
		}
		path = fmt.Sprintf("/v1/churn/scores?%s&limit=%d&cursor=%s", filter, limit, *page.NextCursor)
	}
}

func TestChurnReads(t *testing.T) {
	d := newDeskFixture(t)

	all := d.scores(t, "include_churned=false", 500)
	paged := d.scores(t, "include_churned=false", 2)
	if diff := cmp.Diff(all, paged); diff != "" || len(all) < 5 {
		t.Fatalf("%d scores in one page; page by page differs (-one +paged):\n%s", len(all), diff)
	}
	for i := 1; i < len(all); i++ {
		if a, b := all[i-1], all[i]; a.Score < b.Score || (a.Score == b.Score && a.Customer < b.Customer) {
			t.Fatalf("scores out of order at %d: %+v then %+v", i, a, b)
		}
	}
	region := d.scores(t, "region="+churnRegion, 1)
	var ids []string
	for _, r := range region {
		ids = append(ids, r.Customer+" "+r.Group)
	}
	slices.Sort(ids)
	if diff := cmp.Diff([]string{drift1 + " warning", drift2 + " warning", steady + " stable"}, ids); diff != "" {
		t.Errorf("region %s (-want +got):\n%s", churnRegion, diff)
	}
	withChurned := d.scores(t, "region="+churnRegion+"&include_churned=true", 50)
	if len(withChurned) != 4 || !slices.ContainsFunc(withChurned, func(r churn.ScoreRow) bool { return r.Customer == churned && r.Group == "churned" }) {
		t.Errorf("with the churned: %+v", withChurned)
	}
	threshold := region[0].Score
	high := d.scores(t, fmt.Sprintf("min_score=%v", threshold), 50)
	for _, r := range high {
		if r.Score < threshold {
			t.Errorf("min_score=%v returned %+v", threshold, r)
		}
	}
	if tier := all[0].Tier; tier != "" {
		for _, r := range d.scores(t, "tier="+tier, 50) {
			if r.Tier != tier {
				t.Errorf("tier=%s returned %+v", tier, r)
			}
		}
	}
	low := d.scores(t, "max_score=0.5&min_score=0", 50)
	for _, r := range low {
		if r.Score > 0.5 {
			t.Errorf("max_score=0.5 returned %+v", r)
		}
	}
	if len(low)+len(d.scores(t, "min_score=0.5000001", 50)) != len(all) {
		t.Errorf("scores at most 0.5 and above it do not add up to all")
	}
	for _, tt := range []struct{ query, param string }{
		{"min_score=1.5", "min_score"},
		{"max_score=-1", "max_score"},
		{"min_score=0.8&max_score=0.2", "max_score"},
		{"tier=platinum-plus", "tier"},
		{"region=a%20b", "region"},
		{"include_churned=perhaps", "include_churned"},
		{"cursor=not-a-cursor!", "cursor"},
		{"limit=0", "limit"},
		{"colour=red", "colour"},
	} {
		r := d.get(t, "/v1/churn/scores?"+tt.query, nil)
		if got := decode[errorAnswer](t, r).Error.Parameter; r.status != http.StatusBadRequest || got != tt.param {
			t.Errorf("%s: %d naming %q, want 400 naming %q", tt.query, r.status, got, tt.param)
		}
	}

	// A customer's view: score, reasons with their events, features, alert.
	r := d.get(t, "/v1/churn/customers/"+drift1, nil)
	if r.status != http.StatusOK {
		t.Fatalf("churn customer: %d %s", r.status, r.body)
	}
	det := decode[query.ChurnCustomerResponse](t, r)
	c := det.Churn
	if c.Group != "warning" || c.Score == nil || len(c.Score.Reasons) == 0 || len(c.Score.Reasons[0].Events) == 0 ||
		c.Alert == nil || c.Alert.State != churn.StateOpen || len(c.Alerts) != 1 || len(c.History) == 0 || len(c.Features.Features) == 0 ||
		det.Freshness.Target != query.DefaultChurnTarget || det.Freshness.Partition == nil {
		t.Errorf("churn view of %s: %s", drift1, r.body)
	}
	if r := d.get(t, "/v1/churn/customers/"+nobody, nil); r.status != http.StatusNotFound || decode[errorAnswer](t, r).Freshness == nil {
		t.Errorf("unknown customer: %d %s", r.status, r.body)
	}

	// The queue: the two open alerts, highest priority first, page by page.
	r = d.get(t, "/v1/churn/alerts", nil)
	queue := decode[query.ChurnAlertsResponse](t, r)
	if r.status != http.StatusOK || len(queue.Items) != 2 || queue.NextCursor != nil || queue.Items[0].Priority < queue.Items[1].Priority {
		t.Fatalf("queue: %d %s", r.status, r.body)
	}
	var pagedQueue []string
	path := "/v1/churn/alerts?limit=1"
	for range 5 {
		page := decode[query.ChurnAlertsResponse](t, d.get(t, path, nil))
		for _, it := range page.Items {
			pagedQueue = append(pagedQueue, it.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/churn/alerts?limit=1&cursor=" + *page.NextCursor
	}
	if want := []string{queue.Items[0].ID, queue.Items[1].ID}; !slices.Equal(pagedQueue, want) {
		t.Errorf("queue page by page: %v, want %v", pagedQueue, want)
	}
	r = d.get(t, "/v1/churn/alerts/"+c.Alert.ID, nil)
	if a := decode[query.ChurnAlertResponse](t, r); r.status != http.StatusOK || a.Alert.Customer != drift1 || len(a.Alert.Reasons) == 0 {
		t.Errorf("alert: %d %s", r.status, r.body)
	}
	if r := d.get(t, "/v1/churn/alerts/churn-nosuchalert", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown alert: %d %s", r.status, r.body)
	}
}

func TestChurnCommands(t *testing.T) {
	d := newDeskFixture(t)
	alertOf := func(customer string) *churn.Alert {
		t.Helper()
		r := d.get(t, "/v1/churn/customers/"+customer, nil)
		a := decode[query.ChurnCustomerResponse](t, r).Churn.Alert
		if r.status != http.StatusOK || a == nil {
			t.Fatalf("alert of %s: %d %s", customer, r.status, r.body)
		}
		return a
	}
	a1 := alertOf(drift1)
	base := "/v1/churn/alerts/" + a1.ID

	t.Run("bad bodies", func(t *testing.T) {
		for _, tt := range []struct{ name, path, body, param string }{
			{"unknown field", "/acknowledge", `{"staff_id":"ret-wang01","colour":"red"}`, "colour"},
			{"staff with spaces", "/acknowledge", `{"staff_id":"wang 01"}`, "staff_id"},
			{"staff a number", "/acknowledge", `{"staff_id":7}`, "staff_id"},
			{"long note", "/acknowledge", `{"staff_id":"ret-wang01","note":"` + strings.Repeat("长", 257) + `"}`, "note"},
			{"not JSON", "/acknowledge", `staff_id=ret-wang01`, "body"},
			{"two objects", "/acknowledge", `{"staff_id":"a"}{"staff_id":"b"}`, "body"},
			{"empty", "/acknowledge", ``, "body"},
			{"no kind", "/actions", `{"offer_id":"OF-1","staff_id":"ret-wang01"}`, "kind"},
			{"bad kind", "/actions", `{"kind":"offer_declined","offer_id":"OF-1"}`, "kind"},
			{"presented without offer kind", "/actions", `{"kind":"offer_presented","offer_id":"OF-1","staff_id":"ret-wang01"}`, "offer_kind"},
			{"unknown offer kind", "/actions", `{"kind":"offer_presented","offer_id":"OF-1","offer_kind":"free_phone","staff_id":"ret-wang01"}`, "offer_kind"},
			{"no offer id", "/actions", `{"kind":"offer_accepted"}`, "offer_id"},
			{"bad outcome", "/close", `{"outcome":"maybe","staff_id":"ret-wang01"}`, "outcome"},
			{"no outcome", "/close", `{"staff_id":"ret-wang01"}`, "outcome"},
		} {
			r := d.post(t, base+tt.path, tt.body, nil)
			if got := decode[errorAnswer](t, r).Error.Parameter; r.status != http.StatusBadRequest || got != tt.param {
				t.Errorf("%s: %d naming %q, want 400 naming %q: %s", tt.name, r.status, got, tt.param, r.body)
			}
		}
		r := d.post(t, base+"/acknowledge", `{"staff_id":"ret-wang01"}`, http.Header{"Idempotency-Key": {"has space"}})
		if got := decode[errorAnswer](t, r).Error.Parameter; r.status != http.StatusBadRequest || got != "Idempotency-Key" {
			t.Errorf("bad Idempotency-Key: %d %s", r.status, r.body)
		}
		r = d.post(t, base+"/acknowledge", `{"staff_id":"ret-wang01","note":"`+strings.Repeat("a", 5000)+`"}`, nil)
		if r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("a 5 KB body: %d %s", r.status, r.body)
		}
	})

	t.Run("unknown alert and wrong method", func(t *testing.T) {
		if r := d.post(t, "/v1/churn/alerts/churn-nosuchalert/acknowledge", `{"staff_id":"ret-wang01"}`, nil); r.status != http.StatusNotFound {
			t.Errorf("unknown alert: %d %s", r.status, r.body)
		}
		if r := d.get(t, base+"/close", nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
			t.Errorf("GET a command: %d Allow %q", r.status, r.header.Get("Allow"))
		}
		if r := d.post(t, "/v1/churn/alerts", `{}`, nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST a read: %d Allow %q", r.status, r.header.Get("Allow"))
		}
	})

	// Acknowledge: the event is in the log, once however often retried, and the alert
	// reads acknowledged once folded.
	key := http.Header{"Idempotency-Key": {"ack-" + a1.ID}}
	r := d.post(t, base+"/acknowledge", `{"staff_id":"ret-wang01","note":"called back"}`, key)
	got := decode[query.CommandResponse](t, r)
	want := query.CommandResponse{Event: events.EventRef{Source: query.DefaultCommandSource, ID: "ack-" + a1.ID},
		Type: events.TypeAlertAcknowledged, AlertID: a1.ID}
	if diff := cmp.Diff(want, got); r.status != http.StatusAccepted || diff != "" {
		t.Fatalf("acknowledge: %d (-want +got):\n%s", r.status, diff)
	}
	r = d.post(t, base+"/acknowledge", `{"staff_id":"ret-wang01","note":"called back"}`, key)
	if again := decode[query.CommandResponse](t, r); r.status != http.StatusAccepted || !again.Duplicate || again.Event != want.Event {
		t.Fatalf("retried acknowledge: %d %s", r.status, r.body)
	}
	p := d.layout.PartitionOf(drift1)
	st, err := d.js.Stream(t.Context(), d.layout.Stream(p))
	if err != nil {
		t.Fatal(err)
	}
	subject := d.layout.Subject(p, events.TypeAlertAcknowledged)
	msg, err := st.GetLastMsgForSubject(t.Context(), subject)
	if err != nil {
		t.Fatalf("the acknowledgement is not in the log: %v", err)
	}
	cat, _ := events.DefaultCatalog()
	env, err := projections.NewDecoder(d.layout, cat).Decode(d.layout.Stream(p), subject, msg.Sequence, msg.Time, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	var ack events.AlertAcknowledged
	if err := events.DecodeData(&env.Event, &ack); err != nil {
		t.Fatal(err)
	}
	if env.ID != want.Event.ID || env.Source != query.DefaultCommandSource || env.Subject != drift1 ||
		ack != (events.AlertAcknowledged{AlertID: a1.ID, StaffID: "ret-wang01", Note: "called back"}) {
		t.Errorf("stored event %s/%s subject %s: %+v", env.Source, env.ID, env.Subject, ack)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil || info.State.Subjects[subject] != 1 {
		t.Errorf("acknowledgements stored: %v (%v), want 1", info.State.Subjects, err)
	}
	d.fold(t)
	if a := alertOf(drift1); a.State != churn.StateAcknowledged || a.AcknowledgedBy != "ret-wang01" {
		t.Errorf("after folding: %+v", a)
	}

	r = d.post(t, base+"/actions", `{"kind":"offer_presented","offer_id":"OF-1","offer_kind":"retention_bundle","staff_id":"ret-wang01"}`, nil)
	if got := decode[query.CommandResponse](t, r); r.status != http.StatusAccepted || got.Type != events.TypeOfferPresented {
		t.Fatalf("offer presented: %d %s", r.status, r.body)
	}
	r = d.post(t, base+"/actions", `{"kind":"offer_accepted","offer_id":"OF-1"}`, nil)
	if got := decode[query.CommandResponse](t, r); r.status != http.StatusAccepted || got.Type != events.TypeOfferAccepted {
		t.Fatalf("offer accepted: %d %s", r.status, r.body)
	}
	r = d.post(t, base+"/close", `{"outcome":"retained","staff_id":"ret-wang01"}`, nil)
	if got := decode[query.CommandResponse](t, r); r.status != http.StatusAccepted || got.Type != events.TypeAlertClosed {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	d.fold(t)
	a := alertOf(drift1)
	if a.State != churn.StateClosed || a.Outcome != events.OutcomeRetained || len(a.Actions) != 2 || a.Actions[0].Offer != "retention_bundle" {
		t.Errorf("after the desk's work: %+v", a)
	}
	r = d.post(t, base+"/close", `{"outcome":"churned","staff_id":"ret-li02"}`, bearer("tok-retention"))
	if e := decode[errorAnswer](t, r); r.status != http.StatusConflict || e.Error.Code != "conflict" {
		t.Errorf("closing a closed alert: %d %s", r.status, r.body)
	}
	if r := d.post(t, base+"/acknowledge", `{}`, bearer("tok-retention")); r.status != http.StatusConflict {
		t.Errorf("acknowledging a closed alert: %d %s", r.status, r.body)
	}
	// The queue holds only the other alert now.
	if q := decode[query.ChurnAlertsResponse](t, d.get(t, "/v1/churn/alerts", nil)); len(q.Items) != 1 || q.Items[0].Customer != drift2 {
		t.Errorf("queue after closing: %+v", q.Items)
	}
	d.assertNoPersonalData(t)

	// A server without a publisher refuses commands plainly.
	d.serve(t, query.Config{Tiers: valuetier.Default().Names()}, query.Deps{})
	a2 := alertOf(drift2)
	r = d.post(t, "/v1/churn/alerts/"+a2.ID+"/acknowledge", `{"staff_id":"ret-wang01"}`, nil)
	if e := decode[errorAnswer](t, r); r.status != http.StatusServiceUnavailable || !strings.Contains(e.Error.Message, "commands are not configured") {
		t.Errorf("without a publisher: %d %s", r.status, r.body)
	}
}

// TestReadModelMissing: a server over a database without the churn or service-level
// versions answers 404, not 500.
func TestReadModelMissing(t *testing.T) {
	f := newFixture(t)
	f.serve(t, query.Config{ChurnTarget: "churn_v9", ServiceLevelTarget: "servicelevel_v9"}, query.Deps{})
	for _, path := range []string{"/v1/churn/scores", "/v1/churn/alerts", "/v1/churn/customers/" + alice, "/v1/service-level/answer-rate", "/v1/customers/" + alice + "/complaints"} {
		if r := f.get(t, path, nil); r.status != http.StatusNotFound {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
	}
}

// TestDocumentedRoutesServed: every operation of the document is served (no answer
// from the catch-all), so the document and the routes cannot drift apart silently.
func TestDocumentedRoutesServed(t *testing.T) {
	f := newFixture(t)
	// With the club's rules: without them a member's 404 carries no freshness,
	// which the document does not allow for (a gap of the loyalty routes).
	rs, err := ledger.Load("../../../deploy/loyalty.json")
	if err != nil {
		t.Fatal(err)
	}
	f.serve(t, query.Config{Tiers: valuetier.Default().Names(), LoyaltyRules: rs}, query.Deps{})
	n := 0
	for path, item := range f.doc.Doc.Paths.Map() {
		for method := range item.Operations() {
			n++
			p := strings.ReplaceAll(path, "{id}", "X-1")
			var r response
			if method == http.MethodPost {
				r = f.post(t, p, `{}`, nil)
			} else {
				r = f.do(t, method, p, nil)
			}
			if r.status == http.StatusMethodNotAllowed || strings.Contains(string(r.body), "no such resource") {
				t.Errorf("%s %s is documented but not served: %d %s", method, path, r.status, r.body)
			}
		}
	}
	if n < 18 {
		t.Errorf("%d operations documented, want at least 18", n)
	}
}

// TestReadModelsNotCreatedYet: before the projector has created a read model on the
// database (a fresh installation starting up), its routes answer 503 with a
// Retry-After and say why, rather than a 500.
func TestReadModelsNotCreatedYet(t *testing.T) {
	f := newFixture(t)
	f.serve(t, query.Config{Customer360Target: "customer360_v9", TimelineTarget: "timeline_v9"}, query.Deps{})
	for _, path := range []string{"/v1/customers/" + alice, "/v1/customers/" + alice + "/timeline", "/v1/customers?tier=gold"} {
		r := f.get(t, path, roleToken("agent"))
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "not created yet") {
			t.Errorf("%s: %d %s (Retry-After %q), want 503 saying the read models are not created yet", path, r.status, r.body, r.header.Get("Retry-After"))
		}
	}
}
