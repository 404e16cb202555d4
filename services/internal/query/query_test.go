package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/query"
)

func TestProfile(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		header http.Header
		want   query.Profile // the personal fields and identity only
		access query.Access
	}{
		{"masked by default", nil, query.Profile{CustomerID: alice, Name: ptr("张*"), Phone: ptr("138****8000"),
			IDType: "resident_id", IDNumber: ptr("110101********4578"), Address: ptr("广东省深圳市…")}, query.AccessMasked},
		{"masked viewer", agentH, query.Profile{CustomerID: alice, Name: ptr("张*"),
			Phone: ptr("138****8000"), IDType: "resident_id", IDNumber: ptr("110101********4578"), Address: ptr("广东省深圳市…")}, query.AccessMasked},
		{"full access is clear", full, query.Profile{CustomerID: alice, Name: ptr(aliceName), Phone: ptr(alicePhone),
			IDType: "resident_id", IDNumber: ptr(aliceIDNumber), Address: ptr(aliceAddress)}, query.AccessFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(t, "/v1/customers/"+alice, tt.header)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := decode[query.ProfileResponse](t, r)
			if got.Access != tt.access {
				t.Errorf("access %q, want %q", got.Access, tt.access)
			}
			p := got.Profile
			identity := query.Profile{CustomerID: p.CustomerID, Name: p.Name, Phone: p.Phone, IDType: p.IDType, IDNumber: p.IDNumber, Address: p.Address, Erased: p.Erased}
			if diff := cmp.Diff(tt.want, identity); diff != "" {
				t.Errorf("personal fields (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("folded state", func(t *testing.T) {
		got := decode[query.ProfileResponse](t, f.get(t, "/v1/customers/"+alice, nil)).Profile
		if got.EventsTotal != aliceEvents || got.LifetimeSpendFen != aliceRecharges*5000 || got.ComplaintsTotal != 1 ||
			len(got.OpenComplaints) != 1 || got.Tier != "gold" || got.Lifecycle != "new" || got.Region != "CN-GD-SZ" {
			t.Errorf("profile = %+v", got)
		}
		if got.Partition != f.layout.PartitionOf(alice) {
			t.Errorf("partition %d, want %d", got.Partition, f.layout.PartitionOf(alice))
		}
		if c := got.Channels[srcStore]; c == nil || c.Count != aliceVisits+1 {
			t.Errorf("store channel = %+v, want %d touches", c, aliceVisits+1)
		}
	})

	t.Run("freshness of the customer's partition", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+alice, nil)
		got := decode[query.ProfileResponse](t, r)
		part := f.layout.PartitionOf(alice)
		cp, err := projections.ReadFreshness(t.Context(), f.pool, c360Target, part)
		if err != nil {
			t.Fatal(err)
		}
		want := &query.Freshness{Target: c360Target, Partition: &part, Partitions: 1, Seq: cp.Seq, LastStoredAt: ptr(cp.LastStoredAt.UTC())}
		if diff := cmp.Diff(want, got.Freshness); diff != "" {
			t.Errorf("freshness (-want +got):\n%s", diff)
		}
		if got.Profile.Seq == 0 || got.Profile.Seq > cp.Seq {
			t.Errorf("profile seq %d: must be in (0, %d]", got.Profile.Seq, cp.Seq)
		}
		if h := r.header.Get("X-Touchstream-Seq"); h != strconv.FormatUint(cp.Seq, 10) {
			t.Errorf("X-Touchstream-Seq %q, want %d", h, cp.Seq)
		}
		if h := r.header.Get("X-Touchstream-Lag-Seconds"); h != "0" {
			t.Errorf("X-Touchstream-Lag-Seconds %q, want 0 (never measured)", h)
		}
		if h := r.header.Get("Cache-Control"); h != "no-cache, private" {
			t.Errorf("Cache-Control %q", h)
		}
	})

	t.Run("unknown customer", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+nobody, nil)
		if r.status != http.StatusNotFound {
			t.Fatalf("status %d, want 404", r.status)
		}
		got := decode[errorAnswer](t, r)
		if got.Error.Code != "not_found" || got.Freshness == nil || *got.Freshness.Partition != f.layout.PartitionOf(nobody) {
			t.Errorf("answer %+v", got)
		}
		if r.header.Get("X-Touchstream-Seq") == "" {
			t.Error("a 404 for a customer must say as of which sequence")
		}
	})
	f.assertNoPersonalData(t)
}

// TestTimelinePaging follows the cursors through a customer's timeline: every event
// once, newest first, whatever the page size, ties in event time broken by sequence.
func TestTimelinePaging(t *testing.T) {
	f := newFixture(t)
	all := decode[query.TimelineResponse](t, f.get(t, "/v1/customers/"+alice+"/timeline?limit=500", nil))
	if len(all.Items) != aliceEvents || all.Next != nil {
		t.Fatalf("%d events, next %v; want %d and no next page", len(all.Items), all.Next, aliceEvents)
	}
	for i := 1; i < len(all.Items); i++ {
		a, b := all.Items[i-1], all.Items[i]
		if a.Time.Before(b.Time) || a.Time.Equal(b.Time) && a.Seq < b.Seq {
			t.Fatalf("items %d and %d out of order: %v/%d before %v/%d", i-1, i, a.Time, a.Seq, b.Time, b.Seq)
		}
	}
	wantSeqs := seqs(all.Items)
	for _, limit := range []int{1, 2, 7, aliceEvents - 1, aliceEvents} {
		t.Run("limit "+strconv.Itoa(limit), func(t *testing.T) {
			var got []uint64
			cursor := ""
			for page := 0; ; page++ {
				if page > aliceEvents+1 {
					t.Fatal("the cursors never end")
				}
				q := url.Values{"limit": {strconv.Itoa(limit)}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				r := f.get(t, "/v1/customers/"+alice+"/timeline?"+q.Encode(), nil)
				if r.status != http.StatusOK {
					t.Fatalf("page %d: status %d: %s", page, r.status, r.body)
				}
				p := decode[query.TimelineResponse](t, r)
				if len(p.Items) > limit {
					t.Fatalf("page %d: %d items over the limit %d", page, len(p.Items), limit)
				}
				got = append(got, seqs(p.Items)...)
				if p.Next == nil {
					break
				}
				cursor = *p.Next
			}
			if diff := cmp.Diff(wantSeqs, got); diff != "" {
				t.Errorf("paged sequences differ from the whole timeline (-want +got):\n%s", diff)
			}
		})
	}
}

func seqs(items []timeline.Entry) []uint64 {
	out := make([]uint64, len(items))
	for i, e := range items {
		out[i] = e.Seq
	}
	return out
}

func TestTimelineFilters(t *testing.T) {
	f := newFixture(t)
	at := func(h int) string { return f.base.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	tests := []struct {
		name    string
		query   url.Values
		want    int
		matches func(timeline.Entry) bool
	}{
		{"one type", url.Values{"type": {"recharge.completed"}}, aliceRecharges,
			func(e timeline.Entry) bool { return e.Type == "recharge.completed" }},
		{"two types", url.Values{"type": {"store.visited,complaint.opened"}}, aliceVisits + 1,
			func(e timeline.Entry) bool { return e.Type == "store.visited" || e.Type == "complaint.opened" }},
		{"source", url.Values{"source": {srcStore}}, aliceVisits + 1,
			func(e timeline.Entry) bool { return e.Source == srcStore }},
		{"two sources", url.Values{"source": {srcCRM + "," + srcRecharge}}, 1 + aliceRecharges,
			func(e timeline.Entry) bool { return e.Source != srcStore }},
		{"from", url.Values{"from": {at(30)}}, aliceVisits + 1,
			func(e timeline.Entry) bool { return !e.Time.Before(f.base.Add(30 * time.Hour)) }},
		{"from and to", url.Values{"from": {at(1)}, "to": {at(3)}}, 4,
			func(e timeline.Entry) bool { return e.Type == "recharge.completed" }},
		{"offset in the time", url.Values{"from": {f.base.Add(30 * time.Hour).In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)}}, aliceVisits + 1,
			func(e timeline.Entry) bool { return !e.Time.Before(f.base.Add(30 * time.Hour)) }},
		{"type and source", url.Values{"type": {"complaint.opened"}, "source": {srcStore}}, 1,
			func(e timeline.Entry) bool { return e.Type == "complaint.opened" }},
		{"nothing matches", url.Values{"type": {"bill.paid"}}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(t, "/v1/customers/"+alice+"/timeline?"+tt.query.Encode(), nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := decode[query.TimelineResponse](t, r)
			if len(got.Items) != tt.want {
				t.Errorf("%d items, want %d", len(got.Items), tt.want)
			}
			for _, e := range got.Items {
				if !tt.matches(e) {
					t.Errorf("item %d (%s from %s at %v) does not match the filter", e.Seq, e.Type, e.Source, e.Time)
				}
			}
		})
	}

	t.Run("personal fields are not in the timeline", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+alice+"/timeline?type=customer.registered,complaint.opened", full)
		got := decode[query.TimelineResponse](t, r)
		if len(got.Items) != 2 {
			t.Fatalf("%d items, want 2", len(got.Items))
		}
		for _, s := range []string{aliceName, alicePhone, aliceIDNumber, aliceAddress, "信号很差"} {
			if strings.Contains(string(r.body), s) {
				t.Errorf("the timeline shows %q", s)
			}
		}
		for _, e := range got.Items {
			var data map[string]any
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"name", "phone", "id_number", "address", "description"} {
				if _, ok := data[field]; ok {
					t.Errorf("%s entry has the personal field %s", e.Type, field)
				}
			}
		}
	})

	t.Run("unknown customer", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+nobody+"/timeline", nil)
		if r.status != http.StatusNotFound || decode[errorAnswer](t, r).Error.Code != "not_found" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("freshness is the timeline's", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+alice+"/timeline?limit=1", nil)
		got := decode[query.TimelineResponse](t, r).Freshness
		cp, err := projections.ReadFreshness(t.Context(), f.pool, timelineTarget, f.layout.PartitionOf(alice))
		if err != nil {
			t.Fatal(err)
		}
		if got.Target != timelineTarget || got.Seq != cp.Seq || r.header.Get("X-Touchstream-Seq") != strconv.FormatUint(cp.Seq, 10) {
			t.Errorf("freshness %+v, want seq %d of %s", got, cp.Seq, timelineTarget)
		}
	})
}

func TestSearch(t *testing.T) {
	f := newFixture(t)
	var regionIDs []string
	for i := range regionCount {
		regionIDs = append(regionIDs, fmt.Sprintf("C-R%03d", i))
	}
	summary := func(id, name, phone string) query.CustomerSummary {
		return query.CustomerSummary{Summary: customer360.Summary{CustomerID: id}, Name: &name, Phone: &phone}
	}
	aliceMasked, bobMasked := summary(alice, "张*", "138****8000"), summary(bob, "李*", "139****9000")
	tests := []struct {
		name   string
		query  url.Values
		header http.Header
		want   []query.CustomerSummary // compared on id, name, phone and erased
	}{
		{"phone, masked", url.Values{"phone": {"+86 138-0013-8000"}}, nil, []query.CustomerSummary{aliceMasked}},
		{"phone without country code, full access", url.Values{"phone": {"13800138000"}}, full,
			[]query.CustomerSummary{summary(alice, aliceName, alicePhone)}},
		{"phone nobody has", url.Values{"phone": {"13000000000"}}, nil, []query.CustomerSummary{}},
		{"tier", url.Values{"tier": {"gold"}}, nil, []query.CustomerSummary{aliceMasked, bobMasked}},
		{"tier nobody is in", url.Values{"tier": {"platinum"}}, nil, []query.CustomerSummary{}},
		{"region and segment", url.Values{"region": {"CN-BJ-CY"}, "segment": {"youth"}}, nil, []query.CustomerSummary{bobMasked}},
		{"exact id, full access", url.Values{"id": {bob}}, full, []query.CustomerSummary{summary(bob, "李娜", bobPhone)}},
		{"lifecycle and tier", url.Values{"lifecycle": {"new"}, "tier": {"gold"}}, nil, []query.CustomerSummary{aliceMasked, bobMasked}},
		{"lifecycle nobody is in", url.Values{"lifecycle": {"terminated"}}, nil, []query.CustomerSummary{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(t, "/v1/customers?"+tt.query.Encode(), tt.header)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := decode[query.SearchResponse](t, r)
			brief := make([]query.CustomerSummary, len(got.Items))
			for i, it := range got.Items {
				brief[i].CustomerID, brief[i].Name, brief[i].Phone, brief[i].Erased = it.CustomerID, it.Name, it.Phone, it.Erased
			}
			if diff := cmp.Diff(tt.want, brief); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
		})
	}

	for _, tt := range []struct {
		name  string
		query url.Values
	}{
		{"region", url.Values{"region": {"CN-BJ-HD"}}},
		{"id prefix", url.Values{"id": {"C-R*"}}},
	} {
		t.Run(tt.name+" paged", func(t *testing.T) {
			for _, limit := range []int{1, 4, regionCount} {
				var got []string
				q := tt.query
				q.Set("limit", strconv.Itoa(limit))
				q.Del("cursor")
				for page := 0; ; page++ {
					if page > regionCount+1 {
						t.Fatal("the cursors never end")
					}
					p := decode[query.SearchResponse](t, f.get(t, "/v1/customers?"+q.Encode(), nil))
					for _, it := range p.Items {
						got = append(got, it.CustomerID)
						if it.Region != "CN-BJ-HD" || it.Name == nil || *it.Name != "赵*" {
							t.Errorf("item %+v", it)
						}
					}
					if p.Next == nil {
						break
					}
					q.Set("cursor", *p.Next)
				}
				if diff := cmp.Diff(regionIDs, got); diff != "" {
					t.Errorf("limit %d (-want +got):\n%s", limit, diff)
				}
			}
		})
	}

	t.Run("freshness over every partition", func(t *testing.T) {
		r := f.get(t, "/v1/customers?region=CN-BJ-HD", nil)
		got := decode[query.SearchResponse](t, r).Freshness
		lowest := uint64(1 << 63)
		for p := range f.layout.Partitions {
			cp, err := projections.ReadFreshness(t.Context(), f.pool, c360Target, p)
			if err != nil {
				t.Fatal(err)
			}
			lowest = min(lowest, cp.Seq)
		}
		if got.Partition != nil || got.Partitions != f.layout.Partitions || got.Seq != lowest || got.Target != c360Target {
			t.Errorf("freshness %+v, want a summary of %d partitions at seq %d", got, f.layout.Partitions, lowest)
		}
		if h := r.header.Get("X-Touchstream-Seq"); h != strconv.FormatUint(lowest, 10) {
			t.Errorf("X-Touchstream-Seq %q, want %d", h, lowest)
		}
	})
	t.Run("freshness of an exact id is its partition's", func(t *testing.T) {
		got := decode[query.SearchResponse](t, f.get(t, "/v1/customers?id="+bob, nil)).Freshness
		if got.Partition == nil || *got.Partition != f.layout.PartitionOf(bob) || got.Partitions != 1 {
			t.Errorf("freshness %+v, want partition %d", got, f.layout.PartitionOf(bob))
		}
	})
	f.assertNoPersonalData(t)
}

// TestBadRequests checks that every malformed request is a 400 naming its parameter.
func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	timelineOf := "/v1/customers/" + alice + "/timeline?"
	tests := []struct {
		name, path string
		code       string
		param      string
	}{
		{"id with a dot", "/v1/customers/C.1", "invalid_parameter", "id"},
		{"id too long", "/v1/customers/" + strings.Repeat("a", 65), "invalid_parameter", "id"},
		{"id with an escaped slash", "/v1/customers/C%2F1", "invalid_parameter", "id"},
		{"profile takes no parameters", "/v1/customers/" + alice + "?limit=1", "invalid_parameter", "limit"},
		{"timeline id", "/v1/customers/C!/timeline", "invalid_parameter", "id"},
		{"from not a time", timelineOf + "from=yesterday", "invalid_parameter", "from"},
		{"from without a zone", timelineOf + "from=2026-01-01T00:00:00", "invalid_parameter", "from"},
		{"to not a time", timelineOf + "to=2026-13-01T00:00:00Z", "invalid_parameter", "to"},
		{"to before from", timelineOf + "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "invalid_parameter", "to"},
		{"to equal to from", timelineOf + "from=2026-02-01T00:00:00Z&to=2026-02-01T00:00:00Z", "invalid_parameter", "to"},
		{"limit zero", timelineOf + "limit=0", "invalid_parameter", "limit"},
		{"limit over 500", timelineOf + "limit=501", "invalid_parameter", "limit"},
		{"limit not a number", timelineOf + "limit=ten", "invalid_parameter", "limit"},
		{"limit twice", timelineOf + "limit=5&limit=6", "invalid_parameter", "limit"},
		{"cursor not base64", timelineOf + "cursor=!!!", "invalid_parameter", "cursor"},
		{"cursor of another shape", timelineOf + "cursor=Zm9v", "invalid_parameter", "cursor"},
		{"cursor too long", timelineOf + "cursor=" + strings.Repeat("A", 600), "invalid_parameter", "cursor"},
		{"unknown type", timelineOf + "type=recharge.done", "invalid_parameter", "type"},
		{"empty type in the list", timelineOf + "type=recharge.completed,", "invalid_parameter", "type"},
		{"source with a space", timelineOf + "source=a%20b", "invalid_parameter", "source"},
		{"unknown timeline parameter", timelineOf + "kind=x", "invalid_parameter", "kind"},
		{"search without a filter", "/v1/customers", "missing_filter", ""},
		{"search with only a limit", "/v1/customers?limit=5", "missing_filter", ""},
		{"search with empty filters", "/v1/customers?phone=&tier=", "missing_filter", ""},
		{"phone with letters", "/v1/customers?phone=138abc38000", "invalid_parameter", "phone"},
		{"phone too short", "/v1/customers?phone=1234", "invalid_parameter", "phone"},
		{"phone too long", "/v1/customers?phone=" + strings.Repeat("1", 21), "invalid_parameter", "phone"},
		{"search id malformed", "/v1/customers?id=C.1", "invalid_parameter", "id"},
		{"search id only a star", "/v1/customers?id=*", "invalid_parameter", "id"},
		{"search id star inside", "/v1/customers?id=C*R", "invalid_parameter", "id"},
		{"unknown tier", "/v1/customers?tier=diamond", "invalid_parameter", "tier"},
		{"unknown lifecycle", "/v1/customers?lifecycle=dormant", "invalid_parameter", "lifecycle"},
		{"region with a space", "/v1/customers?region=CN%20BJ", "invalid_parameter", "region"},
		{"segment too long", "/v1/customers?segment=" + strings.Repeat("s", 65), "invalid_parameter", "segment"},
		{"search limit", "/v1/customers?tier=gold&limit=-1", "invalid_parameter", "limit"},
		{"search cursor", "/v1/customers?tier=gold&cursor=***", "invalid_parameter", "cursor"},
		{"unknown search parameter", "/v1/customers?name=x", "invalid_parameter", "name"},
		{"malformed query string", "/v1/customers?tier=%zz", "invalid_parameter", ""},
		{"openapi takes no parameters", "/v1/openapi.json?v=2", "invalid_parameter", "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(t, tt.path, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			got := decode[errorAnswer](t, r)
			if got.Error.Code != tt.code || got.Error.Parameter != tt.param || got.Error.Message == "" {
				t.Errorf("error %+v, want code %s naming %q", got.Error, tt.code, tt.param)
			}
			if got.Error.RequestID == "" || got.Error.RequestID != r.header.Get("X-Request-Id") {
				t.Errorf("request id %q, header %q", got.Error.RequestID, r.header.Get("X-Request-Id"))
			}
		})
	}
	t.Run("the phone is never echoed", func(t *testing.T) {
		r := f.get(t, "/v1/customers?phone=1380013800x", nil)
		if strings.Contains(string(r.body), "1380013800") {
			t.Errorf("the answer echoes the phone number: %s", r.body)
		}
	})
	f.assertNoPersonalData(t)
}

func TestConditionalRequests(t *testing.T) {
	f := newFixture(t)
	paths := []string{
		"/v1/customers/" + alice,
		"/v1/customers/" + alice + "/timeline?limit=3",
		"/v1/customers?tier=gold",
		"/v1/openapi.json",
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			first := f.get(t, path, nil)
			etag := first.header.Get("ETag")
			if first.status != http.StatusOK || etag == "" || strings.HasPrefix(etag, "W/") {
				t.Fatalf("status %d, ETag %q: want 200 with a strong tag", first.status, etag)
			}
			tests := []struct {
				name        string
				ifNoneMatch string
				want        int
			}{
				{"current tag", etag, http.StatusNotModified},
				{"weak form of the tag", "W/" + etag, http.StatusNotModified},
				{"among others", `"old", ` + etag, http.StatusNotModified},
				{"any", "*", http.StatusNotModified},
				{"another tag", `"old"`, http.StatusOK},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := f.get(t, path, http.Header{"If-None-Match": {tt.ifNoneMatch}})
					if r.status != tt.want {
						t.Fatalf("status %d, want %d", r.status, tt.want)
					}
					if r.header.Get("ETag") != etag {
						t.Errorf("ETag %q, want %q", r.header.Get("ETag"), etag)
					}
					if path != "/v1/openapi.json" && r.header.Get("X-Touchstream-Seq") != first.header.Get("X-Touchstream-Seq") {
						t.Errorf("X-Touchstream-Seq %q, want %q", r.header.Get("X-Touchstream-Seq"), first.header.Get("X-Touchstream-Seq"))
					}
				})
			}
		})
	}
	t.Run("the tag depends on the viewer's access", func(t *testing.T) {
		masked := f.get(t, "/v1/customers/"+alice, nil).header.Get("ETag")
		r := f.get(t, "/v1/customers/"+alice, http.Header{"Authorization": full["Authorization"], "If-None-Match": {masked}})
		if r.status != http.StatusOK || r.header.Get("ETag") == masked {
			t.Errorf("full access with the masked tag: status %d, ETag %q", r.status, r.header.Get("ETag"))
		}
	})
	t.Run("the tag changes with the data", func(t *testing.T) {
		before := f.get(t, "/v1/customers/"+bob, nil).header.Get("ETag")
		f.keys.Erase(bob)
		r := f.get(t, "/v1/customers/"+bob, http.Header{"If-None-Match": {before}})
		if r.status != http.StatusOK {
			t.Errorf("after an erasure the old tag still matches: status %d", r.status)
		}
	})
}

func TestErasedKeys(t *testing.T) {
	f := newFixture(t)
	f.keys.Erase(erased)
	for _, header := range []http.Header{nil, full} {
		r := f.get(t, "/v1/customers/"+erased, header)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		p := decode[query.ProfileResponse](t, r).Profile
		if p.Name != nil || p.Phone != nil || p.IDNumber != nil || p.Address != nil || !p.Erased {
			t.Errorf("profile after erasure: name %v phone %v id %v address %v erased %v", p.Name, p.Phone, p.IDNumber, p.Address, p.Erased)
		}
		if p.Region != "CN-SH-PD" || p.EventsTotal != 1 {
			t.Errorf("the rest of the profile must stay: %+v", p)
		}
		s := decode[query.SearchResponse](t, f.get(t, "/v1/customers?region=CN-SH-PD", header))
		if len(s.Items) != 1 || s.Items[0].Name != nil || s.Items[0].Phone != nil || !s.Items[0].Erased {
			t.Errorf("search after erasure: %+v", s.Items)
		}
	}
	// The others are untouched.
	if p := decode[query.ProfileResponse](t, f.get(t, "/v1/customers/"+alice, full)).Profile; p.Erased || p.Name == nil || *p.Name != aliceName {
		t.Errorf("another customer's profile: erased %v, name %v", p.Erased, p.Name)
	}
}

func TestErrorAnswers(t *testing.T) {
	f := newFixture(t)
	t.Run("unknown path", func(t *testing.T) {
		r := f.get(t, "/v2/customers", nil)
		if r.status != http.StatusNotFound || decode[errorAnswer](t, r).Error.Code != "not_found" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	for _, method := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			r := f.do(t, method, "/v1/customers/"+alice, nil)
			if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" ||
				decode[errorAnswer](t, r).Error.Code != "method_not_allowed" {
				t.Errorf("status %d, Allow %q: %s", r.status, r.header.Get("Allow"), r.body)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		r := f.do(t, http.MethodHead, "/v1/customers/"+alice, nil)
		if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("ETag") == "" || r.header.Get("X-Touchstream-Seq") == "" {
			t.Errorf("status %d, %d bytes, headers %v", r.status, len(r.body), r.header)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		r := f.get(t, "/v1/customers/"+alice, http.Header{"Authorization": {"Bearer stolen"}})
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="touchstream", error="invalid_token"`) ||
			decode[errorAnswer](t, r).Error.Code != "unauthenticated" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("request id", func(t *testing.T) {
		tests := []struct {
			name, given string
			echoed      bool
		}{
			{"sane id echoed", "req-2026.03:01_a", true},
			{"id with spaces replaced", "not sane", false},
			{"over-long id replaced", strings.Repeat("a", 129), false},
			{"none given", "", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var h http.Header
				if tt.given != "" {
					h = http.Header{"X-Request-Id": {tt.given}}
				}
				got := f.get(t, "/v1/customers/"+alice, h).header.Get("X-Request-Id")
				if (got == tt.given) != tt.echoed || got == "" {
					t.Errorf("X-Request-Id %q for %q", got, tt.given)
				}
			})
		}
	})
	t.Run("internal error", func(t *testing.T) {
		// A timeline target of the wrong shape: the database refuses the read. (One
		// that does not exist yet is a 503: TestReadModelsNotCreatedYet.)
		if _, err := f.pool.Exec(t.Context(), `CREATE SCHEMA timeline_v9; CREATE TABLE timeline_v9.events (unrelated int)`); err != nil {
			t.Fatal(err)
		}
		g := *f
		g.serve(t, query.Config{TimelineTarget: "timeline_v9"}, query.Deps{})
		r := g.get(t, "/v1/customers/"+alice+"/timeline", http.Header{"X-Request-Id": {"req-500"}})
		got := decode[errorAnswer](t, r)
		if r.status != http.StatusInternalServerError || got.Error.Code != "internal" || got.Error.RequestID != "req-500" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
		if strings.Contains(string(r.body), "timeline_v9") || strings.Contains(string(r.body), "relation") {
			t.Errorf("the answer leaks the cause: %s", r.body)
		}
		if logs := g.logs.String(); !strings.Contains(logs, "request_id=req-500") || !strings.Contains(logs, "does not exist (SQLSTATE 42703)") {
			t.Errorf("the cause is not logged with the request id:\n%s", logs)
		}
	})
	t.Run("key service unavailable", func(t *testing.T) {
		// A real key client, on a NATS server where no key service answers.
		g := *f
		keys := newKeyClientWithoutService(t, f)
		g.serve(t, query.Config{}, query.Deps{Keys: keys})
		r := g.get(t, "/v1/customers/"+alice, nil)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			decode[errorAnswer](t, r).Error.Code != "unavailable" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
		// What needs no key still answers.
		if r := g.get(t, "/v1/customers/"+alice+"/timeline?limit=1", nil); r.status != http.StatusOK {
			t.Errorf("timeline: status %d", r.status)
		}
	})
	f.assertNoPersonalData(t)
}

// TestFreshnessLag runs the projector long enough to measure its lag, and checks that
// the API reports the measurement.
func TestFreshnessLag(t *testing.T) {
	f := newFixture(t)
	r := f.newRunner(t, projections.Config{Group: "query-lag", LagInterval: 20 * time.Millisecond, LeaseTTL: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	part := f.layout.PartitionOf(alice)
	deadline := time.Now().Add(20 * time.Second)
	var fr projections.Freshness
	for {
		var err error
		if fr, err = projections.ReadFreshness(t.Context(), f.pool, c360Target, part); err != nil {
			t.Fatal(err)
		}
		if !fr.MeasuredAt.IsZero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fr.MeasuredAt.IsZero() {
		t.Fatal("the runner never measured its lag")
	}
	fr, _ = projections.ReadFreshness(t.Context(), f.pool, c360Target, part)
	resp := f.get(t, "/v1/customers/"+alice, nil)
	got := decode[query.ProfileResponse](t, resp).Freshness
	if got.MeasuredAt == nil || !got.MeasuredAt.Equal(fr.MeasuredAt) || got.LagSeconds != fr.LagSeconds || got.LagEvents != fr.LagEvents {
		t.Errorf("freshness %+v, want the measurement %+v", got, fr)
	}
	if h := resp.header.Get("X-Touchstream-Lag-Seconds"); h != strconv.FormatFloat(fr.LagSeconds, 'f', -1, 64) {
		t.Errorf("X-Touchstream-Lag-Seconds %q, want %v", h, fr.LagSeconds)
	}
	s := decode[query.SearchResponse](t, f.get(t, "/v1/customers?tier=gold", nil)).Freshness
	if s.MeasuredAt == nil || s.LagSeconds < got.LagSeconds {
		t.Errorf("search freshness %+v: the highest lag cannot be below one partition's (%v)", s, got.LagSeconds)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.get(t, "/v1/customers/"+alice, nil)
	f.get(t, "/v1/customers/"+alice, nil)
	f.get(t, "/v1/customers/"+nobody, nil)
	f.get(t, "/v1/customers?tier=gold", nil)
	f.get(t, "/nowhere", nil)
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var observed uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "touchstream_query_requests_total":
				counts[labels["route"]+" "+labels["code"]] = m.GetCounter().GetValue()
			case "touchstream_query_request_duration_seconds":
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	want := map[string]float64{"customer 200": 2, "customer 404": 1, "search 200": 1, "unmatched 404": 1, "openapi 200": 2}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("requests_total (-want +got):\n%s", diff)
	}
	if observed != 7 {
		t.Errorf("%d latencies observed, want 7", observed)
	}
}
