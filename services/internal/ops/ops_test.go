package ops_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
)

type deadLetter struct {
	ID         int64  `json:"id"`
	Target     string `json:"target"`
	Seq        uint64 `json:"seq"`
	EventID    string `json:"event_id"`
	Customer   string `json:"customer_id"`
	Error      string `json:"error"`
	Attempts   int    `json:"attempts"`
	Status     string `json:"status"`
	ResolvedAt string `json:"resolved_at"`
	Event      *entry `json:"event"`
}

type entry struct {
	Seq      uint64         `json:"seq"`
	Type     string         `json:"type"`
	Source   string         `json:"source"`
	ID       string         `json:"id"`
	Subject  string         `json:"subject"`
	Data     map[string]any `json:"data"`
	Personal string         `json:"personal"`
	Error    string         `json:"error"`
}

type apiErr struct {
	Error struct {
		Code, Message, Parameter string
	} `json:"error"`
}

// TestDeadLettersOverHTTP: a poison event is parked and the partition goes on; show
// fetches it from the log with its personal fields sealed; redrive fails while the bug
// is there (attempts+1), then after the fix applies it by recomputing the customer, and
// the read model equals a clean run; discard records a deadletter.discarded event in the
// log (the timeline shows it, no projection parks it) and marks the dead letter.
func TestDeadLettersOverHTTP(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "register", "C1", events.CustomerRegistered{Name: events.Clear(aliceName), Phone: events.Clear(alicePhone),
		CustomerType: "individual", Region: "CN-SH", Plan: events.Plan{ID: "P1", Kind: "prepaid", MonthlyFee: events.CNY(3800)}})
	f.publish(t, "visit1", "C1", events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 60})
	poison := f.publish(t, "survey", "C1", events.SurveyAnswered{SurveyID: "SV1", Kind: "csat", Score: 2, Comment: events.Clear(aliceComment)})
	f.publish(t, "complaint", "C1", events.ComplaintOpened{ComplaintID: "K1", Category: "network", Severity: "high", PromisedBy: f.at.Add(48 * 3600e9)})
	f.publish(t, "survey2", "C1", events.SurveyAnswered{SurveyID: "SV2", Kind: "nps", Score: 8})
	f.publish(t, "c2", "C2", events.StoreVisited{StoreID: "S2", Purpose: "payment", DurationSeconds: 30})
	poison2 := f.publish(t, "c2bad", "C2", events.StoreVisited{StoreID: "S3", Purpose: "device", DurationSeconds: 300})
	// A message that is no event at all, on a partition subject.
	if _, err := f.js.Publish(t.Context(), f.layout.Subject(3, events.TypeStoreVisited), []byte(`{"specversion":"1.0","id":"junk"}`)); err != nil {
		t.Fatal(err)
	}
	f.c360.broken[poison.ID], f.c360.broken[poison2.ID] = true, true
	f.fold(t, timeline.New("timeline_v1"), f.c360)

	// Parked, and the partition went on: the complaint and the NPS after the survey are
	// in C1's profile.
	list := decode[struct {
		Items      []deadLetter `json:"items"`
		NextBefore *string      `json:"next_before"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/dead-letters?status=parked&target="+c360Target, "", nil))
	byEvent := map[string]deadLetter{}
	for _, d := range list.Items {
		byEvent[d.EventID] = d
	}
	dl, dl2 := byEvent[poison.ID], byEvent[poison2.ID]
	if len(list.Items) != 3 || dl.Customer != "C1" || dl2.Customer != "C2" {
		t.Fatalf("parked in %s: %+v, want the two poison events and the junk", c360Target, list.Items)
	}
	if tl := f.do(t, http.MethodGet, "/v1/ops/dead-letters?target=timeline_v1", "", nil); strings.Contains(string(tl.body), poison.ID) {
		t.Fatalf("the timeline parked an event only customer360 refused: %s", tl.body)
	}
	p, err := customer360.Get(t.Context(), f.pool, c360Target, "C1")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.OpenComplaints) != 1 || p.LastNPS == nil || p.LastSatisfaction != nil || p.EventsTotal != 4 {
		t.Fatalf("C1 before the fix: complaints %v, NPS %v, satisfaction %v, events %d; want the later events applied, not the survey",
			p.OpenComplaints, p.LastNPS, p.LastSatisfaction, p.EventsTotal)
	}

	// show: the event from the log, decoded, the comment sealed.
	show := f.do(t, http.MethodGet, fmt.Sprintf("/v1/ops/dead-letters/%d", dl.ID), "", nil)
	got := decode[deadLetter](t, show)
	if got.Event == nil || got.Event.Seq != dl.Seq || got.Event.Type != events.TypeSurveyAnswered || got.Event.Personal != "sealed" ||
		got.Event.Data["comment"] != "[sealed]" || got.Attempts < 1 || !strings.Contains(got.Error, "unsupported field") {
		t.Fatalf("show: %s", show.body)
	}
	if strings.Contains(string(show.body), aliceComment) {
		t.Fatalf("show printed personal data in clear: %s", show.body)
	}

	// Redrive before the fix: 422, still parked, one more attempt.
	r := f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/redrive", dl.ID), "", nil)
	if e := decode[apiErr](t, r); r.status != http.StatusUnprocessableEntity || !strings.Contains(e.Error.Message, "unsupported field") {
		t.Fatalf("redrive before the fix: %d %s", r.status, r.body)
	}
	after := decode[deadLetter](t, f.do(t, http.MethodGet, fmt.Sprintf("/v1/ops/dead-letters/%d", dl.ID), "", nil))
	if after.Status != "parked" || after.Attempts != got.Attempts+1 {
		t.Fatalf("after a failed redrive: status %s attempts %d, want parked and %d", after.Status, after.Attempts, got.Attempts+1)
	}

	// The fix, then the redrive: the read model equals a clean run.
	f.c360.fixed.Store(true)
	r = f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/redrive", dl.ID), "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("redrive after the fix: %d %s", r.status, r.body)
	}
	res := decode[struct {
		DeadLetter deadLetter `json:"dead_letter"`
		Recomputed struct {
			Events   int     `json:"events"`
			Redriven []int64 `json:"redriven"`
		} `json:"recomputed"`
	}](t, r)
	if res.DeadLetter.Status != "redriven" || res.DeadLetter.ResolvedAt == "" || res.Recomputed.Events != 5 {
		t.Errorf("redrive answer: %s", r.body)
	}
	clean, err := customer360.New(customer360.Options{Target: cleanTarget, Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	f.fold(t, clean)
	if diff := cmp.Diff(profileRow(t, f.pool, cleanTarget, "C1"), profileRow(t, f.pool, c360Target, "C1")); diff != "" {
		t.Fatalf("C1 after redrive (-clean run +redriven):\n%s", diff)
	}
	if r := f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/redrive", dl.ID), "", nil); r.status != http.StatusConflict {
		t.Errorf("second redrive: %d %s, want 409", r.status, r.body)
	}

	// Discard C2's poison: the event in the log, then the row.
	r = f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/discard", dl2.ID), "", map[string]string{"reason": "device visits are out of scope"})
	if r.status != http.StatusOK {
		t.Fatalf("discard: %d %s", r.status, r.body)
	}
	disc := decode[struct {
		DeadLetter deadLetter `json:"dead_letter"`
		Seq        uint64     `json:"seq"`
	}](t, r)
	if disc.DeadLetter.Status != "discarded" {
		t.Errorf("discarded row: %+v", disc.DeadLetter)
	}
	f.fold(t, timeline.New("timeline_v1"), f.c360)
	hist := decode[struct {
		Items []entry `json:"items"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/customers/C2/history?type=deadletter.discarded", "", nil))
	if len(hist.Items) != 1 || hist.Items[0].Seq != disc.Seq || hist.Items[0].Source != "urn:touchstream:service:ops" ||
		hist.Items[0].Data["reason"] != "device visits are out of scope" || hist.Items[0].Data["operator"] != "console" ||
		hist.Items[0].Data["seq"] != float64(dl2.Seq) {
		t.Fatalf("the discard in C2's history: %+v", hist.Items)
	}
	parked, err := projections.ListDeadLetters(t.Context(), f.pool, projections.DeadLetterFilter{Status: projections.StatusParked})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range parked {
		if d.EventID != "junk" {
			t.Fatalf("parked after the discard was folded: %+v, want only the junk (nobody parks deadletter.discarded)", d)
		}
	}
	// A second discard: the row is no longer parked.
	if r := f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/discard", dl2.ID), "", map[string]string{"reason": "again"}); r.status != http.StatusConflict {
		t.Errorf("second discard: %d %s, want 409", r.status, r.body)
	}
	// The junk names no customer: it cannot be discarded by a customer event.
	if r := f.do(t, http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/discard", parked[0].ID), "", map[string]string{"reason": "junk"}); r.status != http.StatusConflict {
		t.Errorf("discard of the junk: %d %s, want 409", r.status, r.body)
	}

	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"unknown dead letter", http.MethodGet, "/v1/ops/dead-letters/999999", nil, http.StatusNotFound},
		{"bad id", http.MethodGet, "/v1/ops/dead-letters/x", nil, http.StatusBadRequest},
		{"bad status", http.MethodGet, "/v1/ops/dead-letters?status=lost", nil, http.StatusBadRequest},
		{"unknown parameter", http.MethodGet, "/v1/ops/dead-letters?colour=red", nil, http.StatusBadRequest},
		{"discard without reason", http.MethodPost, fmt.Sprintf("/v1/ops/dead-letters/%d/discard", dl.ID), map[string]string{}, http.StatusBadRequest},
		{"redrive by GET", http.MethodGet, fmt.Sprintf("/v1/ops/dead-letters/%d/redrive", dl.ID), nil, http.StatusMethodNotAllowed},
		{"unknown route", http.MethodGet, "/v1/ops/nothing", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := f.do(t, tc.method, tc.path, "", tc.body); r.status != tc.want {
				t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.want)
			}
		})
	}
	if r := f.do(t, http.MethodGet, "/v1/ops/status", "stranger", nil); r.status != http.StatusUnauthorized {
		t.Errorf("unauthenticated: %d", r.status)
	}
}

// TestHistoryAndStatus: a customer's history in stream order, filtered by type and
// time, sealed by default, in clear only for an operator allowed to, and refused to
// others; the status shows the stream, every target's checkpoints and lag, and the
// dead-letter counts.
func TestHistoryAndStatus(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "register", "C1", events.CustomerRegistered{Name: events.Clear(aliceName), Phone: events.Clear(alicePhone),
		CustomerType: "individual", Region: "CN-SH", Plan: events.Plan{ID: "P1", Kind: "prepaid", MonthlyFee: events.CNY(3800)}})
	for i := range 5 {
		f.publish(t, fmt.Sprintf("visit%d", i), "C1", events.StoreVisited{StoreID: fmt.Sprintf("S%d", i), Purpose: "inquiry", DurationSeconds: 60})
		f.publish(t, fmt.Sprintf("other%d", i), "C2", events.StoreVisited{StoreID: "S9", Purpose: "payment", DurationSeconds: 10})
	}
	wrong := f.ev["visit3"]
	f.publish(t, "retract", "C1", events.EventRetracted{Target: wrong.Ref(), Reason: "keyed on the wrong customer"})
	f.fold(t, timeline.New("timeline_v1"), f.c360)

	all := decode[struct {
		CustomerID string  `json:"customer_id"`
		Items      []entry `json:"items"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/customers/C1/history", "", nil))
	var ids []string
	var last uint64
	for _, e := range all.Items {
		ids = append(ids, e.ID)
		if e.Seq <= last || e.Subject != "C1" {
			t.Errorf("entry %+v out of order or of another customer", e)
		}
		last = e.Seq
	}
	var want []string
	for _, n := range []string{"register", "visit0", "visit1", "visit2", "visit3", "visit4", "retract"} {
		want = append(want, f.ev[n].ID)
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Fatalf("history ids (-want +got):\n%s", diff)
	}
	reg := all.Items[0]
	if reg.Personal != "sealed" || reg.Data["name"] != "[sealed]" || reg.Data["phone"] != "[sealed]" {
		t.Errorf("registration by default: %+v", reg)
	}

	// Filters: type, and a time range (visit1 .. visit2 inclusive).
	only := decode[struct {
		Items []entry `json:"items"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/customers/C1/history?type=event.retracted,customer.registered", "", nil))
	if len(only.Items) != 2 || only.Items[0].Type != events.TypeCustomerRegistered || only.Items[1].Type != events.TypeEventRetracted {
		t.Errorf("type filter: %+v", only.Items)
	}
	from, to := f.ev["visit1"].Time.Format("2006-01-02T15:04:05Z07:00"), f.ev["visit3"].Time.Format("2006-01-02T15:04:05Z07:00")
	rng := decode[struct {
		Items []entry `json:"items"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/customers/C1/history?from="+urlEscape(from)+"&to="+urlEscape(to), "", nil))
	if len(rng.Items) != 2 || rng.Items[0].ID != f.ev["visit1"].ID || rng.Items[1].ID != f.ev["visit2"].ID {
		t.Errorf("time range [%s, %s): %+v", from, to, rng.Items)
	}

	// Reveal: refused to the console, granted to the auditor.
	if r := f.do(t, http.MethodGet, "/v1/ops/customers/C1/history?reveal=true", "", nil); r.status != http.StatusForbidden {
		t.Errorf("reveal by the console: %d %s, want 403", r.status, r.body)
	}
	r := f.do(t, http.MethodGet, "/v1/ops/customers/C1/history?reveal=true&type=customer.registered", "auditor", nil)
	clear := decode[struct {
		Items []entry `json:"items"`
	}](t, r)
	if len(clear.Items) != 1 || clear.Items[0].Personal != "revealed" || clear.Items[0].Data["name"] != aliceName || clear.Items[0].Data["phone"] != alicePhone {
		t.Errorf("revealed registration: %s", r.body)
	}
	// After an erasure the auditor sees nulls.
	f.keys.Erase("C1")
	erased := decode[struct {
		Items []entry `json:"items"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/customers/C1/history?reveal=true&type=customer.registered", "auditor", nil))
	if len(erased.Items) != 1 || erased.Items[0].Personal != "erased" || erased.Items[0].Data["name"] != nil {
		t.Errorf("after erasure: %+v", erased.Items)
	}
	for _, bad := range []string{"/v1/ops/customers/C%20X/history", "/v1/ops/customers/C1/history?type=no.such", "/v1/ops/customers/C1/history?from=yesterday",
		"/v1/ops/customers/C1/history?limit=0"} {
		if r := f.do(t, http.MethodGet, bad, "", nil); r.status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s, want 400", bad, r.status, r.body)
		}
	}

	// Status.
	st := decode[struct {
		Partitions int `json:"partitions"`
		Streams    []struct {
			Name     string `json:"name"`
			Messages uint64 `json:"messages"`
			LastSeq  uint64 `json:"last_seq"`
		} `json:"streams"`
		Targets []struct {
			Target     string `json:"target"`
			MinSeq     uint64 `json:"min_seq"`
			LagEvents  uint64 `json:"lag_events"`
			Partitions []struct {
				Partition int    `json:"partition"`
				Seq       uint64 `json:"seq"`
			} `json:"partitions"`
		} `json:"targets"`
		Rebuilds []any `json:"rebuilds"`
	}](t, f.do(t, http.MethodGet, "/v1/ops/status", "", nil))
	if st.Partitions != 8 || len(st.Streams) != 1 || st.Streams[0].Messages != 12 || st.Streams[0].LastSeq != 12 {
		t.Errorf("status streams: %+v", st)
	}
	if len(st.Targets) != 2 || st.Targets[0].Target != c360Target || st.Targets[1].Target != "timeline_v1" {
		t.Fatalf("status targets: %+v", st.Targets)
	}
	for _, tg := range st.Targets {
		if tg.LagEvents != 0 || len(tg.Partitions) != 8 {
			t.Errorf("target %s: lag %d, %d partitions; want caught up over 8", tg.Target, tg.LagEvents, len(tg.Partitions))
		}
	}
	// Publish more: the lag shows at once.
	f.publish(t, "late", "C1", events.StoreVisited{StoreID: "S7", Purpose: "inquiry", DurationSeconds: 5})
	st2, err := f.svc.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range st2.Targets {
		if tg.LagEvents != 1 {
			t.Errorf("after one more event, %s lags %d events, want 1", tg.Target, tg.LagEvents)
		}
	}
}

func urlEscape(s string) string { return strings.ReplaceAll(s, "+", "%2B") }
