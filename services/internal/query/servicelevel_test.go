package query_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/services/internal/query"
)

// TestServiceLevelRoutes reads the service-level model folded from the desk fixture's
// call center day: 20 inbound calls to care with a known answer rate, complaints
// breached and open.
func TestServiceLevelRoutes(t *testing.T) {
	d := newDeskFixture(t)
	hour := d.day.Add(10 * time.Hour)
	q := func(t time.Time) string { return strings.ReplaceAll(t.Format(time.RFC3339), "+", "%2B") }

	r := d.get(t, "/v1/service-level/answer-rate?queue=care&from="+q(hour)+"&to="+q(hour.Add(time.Hour)), nil)
	ar := decode[query.AnswerRateResponse](t, r)
	wantTotal := query.PeriodRate{Offered: 20, Answered: 18, Within20: 17, Abandoned: 2, Outbound: 1, AnswerRate: 0.85, Target: 0.85, MeetsTarget: true}
	if diff := cmp.Diff(wantTotal, ar.Total); r.status != http.StatusOK || diff != "" || len(ar.Hours) != 1 || ar.Hours[0].AnswerRate != 0.85 ||
		!ar.Hours[0].Hour.Equal(hour) || ar.Freshness.Target != query.DefaultServiceLevelTarget {
		t.Errorf("care 10:00-11:00: %d (-want +got total):\n%s\n%s", r.status, diff, r.body)
	}
	r = d.get(t, "/v1/service-level/answer-rate?from="+q(hour)+"&to="+q(hour.Add(time.Hour)), nil)
	if ar := decode[query.AnswerRateResponse](t, r); r.status != http.StatusOK || ar.Total.Offered != 21 || ar.Total.AnswerRate != 18.0/21 || !ar.Total.MeetsTarget {
		t.Errorf("every queue 10:00-11:00: %s", r.body)
	}
	r = d.get(t, "/v1/service-level/answer-rate", nil)
	if ar := decode[query.AnswerRateResponse](t, r); r.status != http.StatusOK || ar.To.Sub(ar.From) != 24*time.Hour {
		t.Errorf("default period: %d %s", r.status, r.body)
	}
	for _, tt := range []struct{ query, param string }{
		{"from=yesterday", "from"},
		{"from=" + q(hour) + "&to=" + q(hour), "to"},
		{"from=" + q(hour) + "&to=" + q(hour.AddDate(0, 0, 32)), "to"},
		{"queue=care%20desk", "queue"},
	} {
		r := d.get(t, "/v1/service-level/answer-rate?"+tt.query, nil)
		if got := decode[errorAnswer](t, r).Error.Parameter; r.status != http.StatusBadRequest || got != tt.param {
			t.Errorf("%s: %d naming %q, want 400 naming %q", tt.query, r.status, got, tt.param)
		}
	}

	day := d.day
	r = d.get(t, "/v1/service-level/breaches?from="+q(day)+"&to="+q(day.Add(24*time.Hour)), nil)
	br := decode[query.BreachesResponse](t, r)
	i := slices.IndexFunc(br.Items, func(c servicelevel.Complaint) bool { return c.ComplaintID == "SL-CMP-2" })
	if r.status != http.StatusOK || i < 0 || br.Items[i].Reason != servicelevel.ReasonDeadlinePassed || !br.Items[i].BreachedAt.Equal(hour.Add(4*time.Hour)) ||
		slices.ContainsFunc(br.Items, func(c servicelevel.Complaint) bool { return c.ComplaintID == "SL-CMP-1" }) {
		t.Errorf("breaches of the day: %d %s", r.status, r.body)
	}
	if r := d.get(t, "/v1/service-level/breaches?limit=0", nil); r.status != http.StatusBadRequest {
		t.Errorf("limit=0: %d", r.status)
	}

	r = d.get(t, "/v1/customers/"+slClient+"/complaints", nil)
	cs := decode[query.ComplaintsResponse](t, r)
	var got []string
	for _, c := range cs.Items {
		got = append(got, fmt.Sprintf("%s breached=%v", c.ComplaintID, c.Breached))
	}
	if diff := cmp.Diff([]string{"SL-CMP-2 breached=true", "SL-CMP-1 breached=false"}, got); r.status != http.StatusOK || diff != "" || cs.Freshness.Partition == nil {
		t.Errorf("open complaints: %d (-want +got):\n%s", r.status, diff)
	}
	if r := d.get(t, "/v1/customers/"+nobody+"/complaints", nil); r.status != http.StatusOK || len(decode[query.ComplaintsResponse](t, r).Items) != 0 {
		t.Errorf("complaints of a customer with none: %d %s", r.status, r.body)
	}

	r = d.get(t, "/v1/service-level/summary?at="+q(day.Add(23*time.Hour)), nil)
	sum := decode[query.ServiceLevelSummaryResponse](t, r).Summary
	// Past their deadline: SL-CMP-2 and the fixture's complaint of C-ALICE (due
	// three days after the fixture's start, never resolved).
	if r.status != http.StatusOK || sum.Day != day.Format(time.DateOnly) || sum.PastDeadline != 2 || sum.BreachedToday < 1 || sum.OpenComplaints != 3 {
		t.Fatalf("summary: %d %s", r.status, r.body)
	}
	i = slices.IndexFunc(sum.Queues, func(h servicelevel.HourRate) bool { return h.Queue == "care" })
	if i < 0 || sum.Queues[i].Offered != 20 || sum.Queues[i].Within20 != 17 || sum.Total.Offered != 20+1+1 {
		t.Errorf("summary's queues: %s", r.body)
	}
	if r := d.get(t, "/v1/service-level/summary", nil); r.status != http.StatusOK {
		t.Errorf("summary now: %d %s", r.status, r.body)
	}
	if r := d.get(t, "/v1/service-level/summary?at=noon", nil); r.status != http.StatusBadRequest {
		t.Errorf("at=noon: %d", r.status)
	}
}
