package query_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/query"
)

// roleToken is the fixture's token of a staff member holding only role r.
func roleToken(r access.Role) http.Header { return bearer("tok-" + string(r)) }

// TestRoleMatrix calls every route of the query API with a token of each role, and
// without one: the role matrix's roles get the route's answer, the others 403 naming
// the roles that may, no token 401. Every answer conforms to the OpenAPI document.
func TestRoleMatrix(t *testing.T) {
	d := newDeskFixture(t)
	d.serve(t, query.Config{Tiers: valuetier.Default().Names(), LoyaltyRules: d.foldLoyalty(t)}, query.Deps{Commands: d.pub})
	alert := decode[query.ChurnCustomerResponse](t, d.get(t, "/v1/churn/customers/"+drift1, nil)).Churn.Alert
	if alert == nil {
		t.Fatal("no alert for " + drift1)
	}
	al := "/v1/churn/alerts/" + alert.ID
	routes := []struct {
		route, method, path, body string
		want                      int // the answer to a role that may
	}{
		{"customer", "GET", "/v1/customers/" + alice, "", 200},
		{"timeline", "GET", "/v1/customers/" + alice + "/timeline", "", 200},
		{"search", "GET", "/v1/customers?region=CN-BJ-HD&limit=2", "", 200},
		{"complaints", "GET", "/v1/customers/" + slClient + "/complaints", "", 200},
		{"loyalty_member", "GET", "/v1/loyalty/members/" + alice, "", 200},
		{"loyalty_ledger", "GET", "/v1/loyalty/members/" + alice + "/ledger", "", 200},
		{"loyalty_totals", "GET", "/v1/loyalty/totals", "", 200},
		{"churn_scores", "GET", "/v1/churn/scores", "", 200},
		{"churn_distribution", "GET", "/v1/churn/distribution", "", 200},
		{"churn_customer", "GET", "/v1/churn/customers/" + drift1, "", 200},
		{"churn_alerts", "GET", "/v1/churn/alerts", "", 200},
		{"churn_alert", "GET", al, "", 200},
		{"churn_acknowledge", "POST", al + "/acknowledge", `{"note":"called"}`, 202},
		{"churn_action", "POST", al + "/actions", `{"kind":"offer_presented","offer_id":"OF-9","offer_kind":"discount"}`, 202},
		{"churn_close", "POST", al + "/close", `{"outcome":"retained"}`, 202},
		{"servicelevel_answer_rate", "GET", "/v1/service-level/answer-rate", "", 200},
		{"servicelevel_breaches", "GET", "/v1/service-level/breaches", "", 200},
		{"servicelevel_summary", "GET", "/v1/service-level/summary", "", 200},
		{"audit_access", "GET", "/v1/audit/access", "", 200},
		{"session", "GET", "/v1/session", "", 200},
		{"stream_ticket", "POST", "/v1/stream/tickets", "", 201},
	}
	// Every route of the matrix that the query API serves is here.
	var covered, served []string
	for _, r := range routes {
		covered = append(covered, r.route)
	}
	for _, r := range access.Routes() {
		if !strings.HasPrefix(r, "ops_") && !strings.HasPrefix(r, "stream_") && r != access.PersonalClear {
			served = append(served, r)
		}
	}
	served = append(served, "stream_ticket")
	slices.Sort(covered)
	slices.Sort(served)
	if diff := cmp.Diff(served, covered); diff != "" {
		t.Errorf("routes of the matrix not exercised (-matrix +test):\n%s", diff)
	}
	call := func(method, path, body string, h http.Header) response {
		t.Helper()
		if method == "POST" {
			return d.post(t, path, body, h)
		}
		return d.get(t, path, h)
	}
	for _, rt := range routes {
		t.Run(rt.route, func(t *testing.T) {
			needs, _ := access.Needs(rt.route)
			for _, role := range access.AllRoles {
				want := http.StatusForbidden
				if slices.Contains(needs, role) {
					want = rt.want
				}
				r := call(rt.method, rt.path, rt.body, roleToken(role))
				if r.status != want {
					t.Errorf("%s: %d, want %d: %s", role, r.status, want, r.body)
					continue
				}
				if want == http.StatusForbidden {
					e := decode[errorAnswer](t, r)
					if e.Error.Code != "forbidden" || !strings.Contains(e.Error.Message, "needs the role") ||
						!strings.Contains(e.Error.Message, string(needs[0])) || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
						t.Errorf("%s: refusal %s (WWW-Authenticate %q)", role, r.body, r.header.Get("WWW-Authenticate"))
					}
				}
			}
			r := call(rt.method, rt.path, rt.body, noToken)
			if e := decode[errorAnswer](t, r); r.status != http.StatusUnauthorized || e.Error.Code != "unauthenticated" ||
				r.header.Get("WWW-Authenticate") != `Bearer realm="touchstream"` {
				t.Errorf("no token: %d %s (WWW-Authenticate %q)", r.status, r.body, r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("the OpenAPI document is open", func(t *testing.T) {
		if r := d.get(t, "/v1/openapi.json", noToken); r.status != http.StatusOK {
			t.Errorf("%d", r.status)
		}
	})
	t.Run("a command records the token's staff member, never another", func(t *testing.T) {
		r := d.post(t, al+"/acknowledge", `{"staff_id":"ret-someone-else"}`, roleToken(access.Retention))
		if e := decode[errorAnswer](t, r); r.status != http.StatusForbidden || e.Error.Parameter != "staff_id" || !strings.Contains(e.Error.Message, "ret-li02") {
			t.Errorf("acting as another: %d %s", r.status, r.body)
		}
		if r := d.post(t, al+"/acknowledge", `{"staff_id":"ret-li02"}`, roleToken(access.Retention)); r.status != http.StatusAccepted {
			t.Errorf("naming oneself: %d %s", r.status, r.body)
		}
	})
}

// TestPersonalFieldsByRole: the supervisor sees personal fields in clear, the
// agent and the retention desk masked, the others not at all.
func TestPersonalFieldsByRole(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		role   access.Role
		status int
		access query.Access
		phone  string
	}{
		{access.Agent, 200, query.AccessMasked, "138****8000"},
		{access.Retention, 200, query.AccessMasked, "138****8000"},
		{access.Supervisor, 200, query.AccessFull, alicePhone},
		{access.Manager, 403, "", ""},
		{access.Operator, 403, "", ""},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			r := f.get(t, "/v1/customers/"+alice, roleToken(tc.role))
			if r.status != tc.status {
				t.Fatalf("profile: %d %s", r.status, r.body)
			}
			s := f.get(t, "/v1/customers?id="+alice, roleToken(tc.role))
			if tc.status != 200 {
				if strings.Contains(string(r.body), "8000") || s.status != tc.status {
					t.Errorf("refused, yet: %s / search %d", r.body, s.status)
				}
				return
			}
			p := decode[query.ProfileResponse](t, r)
			if p.Access != tc.access || p.Profile.Phone == nil || *p.Profile.Phone != tc.phone {
				t.Errorf("profile access %s phone %v, want %s %s", p.Access, p.Profile.Phone, tc.access, tc.phone)
			}
			sr := decode[query.SearchResponse](t, s)
			if sr.Access != tc.access || len(sr.Items) != 1 || *sr.Items[0].Phone != tc.phone {
				t.Errorf("search: %s", s.body)
			}
		})
	}
	t.Run("rotation: both of the supervisor's tokens work", func(t *testing.T) {
		for _, tok := range []string{"tok-supervisor", "tok-supervisor-2"} {
			r := f.get(t, "/v1/customers/"+alice, bearer(tok))
			if p := decode[query.ProfileResponse](t, r); r.status != 200 || p.Access != query.AccessFull {
				t.Errorf("%s: %d %s", tok, r.status, r.body)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		r := f.get(t, "/v1/session", agentH)
		s := decode[query.SessionResponse](t, r)
		if s.StaffID != "agent-7" || s.Access != query.AccessMasked || !slices.Contains(s.Allowed, "customer") ||
			slices.Contains(s.Allowed, "churn_alerts") || slices.Contains(s.Allowed, access.PersonalClear) {
			t.Errorf("agent's session: %s", r.body)
		}
		s = decode[query.SessionResponse](t, f.get(t, "/v1/session", full))
		if s.Access != query.AccessFull || !slices.Contains(s.Allowed, access.PersonalClear) || !slices.Contains(s.Allowed, "audit_access") {
			t.Errorf("supervisor's session: %+v", s)
		}
	})
}

// auditRows reads the access audit log's rows, oldest first.
func (f *fixture) auditRows(t *testing.T) []audit.Entry {
	t.Helper()
	rows, _, err := audit.List(t.Context(), f.pool, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rows)
	return rows
}

// TestAccessAudit: every read returning personal fields is recorded with who, which
// customer, which fields, masked or clear, the route and the request id; aggregates
// and reads without personal fields are not; a read that cannot be recorded is not
// answered; the log is queryable by operators and supervisors.
func TestAccessAudit(t *testing.T) {
	d := newDeskFixture(t)
	f := d.fixture
	r := f.get(t, "/v1/customers/"+alice, http.Header{"Authorization": agentH["Authorization"], "X-Request-Id": {"req-agent-1"}})
	if r.status != 200 {
		t.Fatalf("profile: %d %s", r.status, r.body)
	}
	f.get(t, "/v1/customers/"+alice, http.Header{"Authorization": full["Authorization"], "X-Request-Id": {"req-sup-1"}})
	f.get(t, "/v1/customers?region=CN-BJ-HD&limit=3", http.Header{"Authorization": roleToken(access.Retention)["Authorization"], "X-Request-Id": {"req-search"}})
	f.keys.Erase(erased)
	f.get(t, "/v1/customers/"+erased, full) // nothing personal left to return
	// Reads without personal fields, and aggregates.
	for _, path := range []string{"/v1/customers/" + alice + "/timeline", "/v1/churn/customers/" + drift1, "/v1/churn/alerts",
		"/v1/churn/scores", "/v1/churn/distribution", "/v1/service-level/summary", "/v1/customers/" + slClient + "/complaints"} {
		if r := f.get(t, path, nil); r.status != 200 {
			t.Errorf("%s: %d", path, r.status)
		}
	}
	var want []audit.Entry
	all := []string{"name", "phone", "id_number", "address"}
	want = append(want,
		audit.Entry{StaffID: "agent-7", Roles: []string{"agent"}, Customer: alice, Fields: all, Access: "masked", Route: "customer", RequestID: "req-agent-1"},
		audit.Entry{StaffID: "sup-1", Roles: []string{"supervisor"}, Customer: alice, Fields: all, Access: "full", Route: "customer", RequestID: "req-sup-1"})
	for i := range 3 {
		want = append(want, audit.Entry{StaffID: "ret-li02", Roles: []string{"retention"}, Customer: fmt.Sprintf("C-R%03d", i),
			Fields: []string{"name", "phone"}, Access: "masked", Route: "search", RequestID: "req-search"})
	}
	got := f.auditRows(t)
	if diff := cmp.Diff(want, got, cmpIgnoreIDAndTime); diff != "" {
		t.Errorf("audit rows (-want +got):\n%s", diff)
	}

	t.Run("the audit route", func(t *testing.T) {
		for _, h := range []http.Header{roleToken(access.Operator), full} {
			r := f.get(t, "/v1/audit/access?customer="+alice, h)
			a := decode[query.AuditResponse](t, r)
			if r.status != 200 || len(a.Items) != 2 || a.Items[0].StaffID != "sup-1" || a.Items[1].StaffID != "agent-7" {
				t.Errorf("by customer: %d %s", r.status, r.body)
			}
		}
		a := decode[query.AuditResponse](t, f.get(t, "/v1/audit/access?staff=ret-li02&limit=2", full))
		if len(a.Items) != 2 || a.Next == nil {
			t.Fatalf("by staff, page 1: %+v", a)
		}
		b := decode[query.AuditResponse](t, f.get(t, "/v1/audit/access?staff=ret-li02&limit=2&cursor="+*a.Next, full))
		if len(b.Items) != 1 || b.Next != nil || b.Items[0].Customer != "C-R000" {
			t.Errorf("by staff, page 2: %+v", b)
		}
		for _, bad := range []string{"customer=a%20b", "staff=li@x", "from=yesterday", "cursor=zz", "colour=red"} {
			if r := f.get(t, "/v1/audit/access?"+bad, full); r.status != 400 {
				t.Errorf("%s: %d", bad, r.status)
			}
		}
		// The audit route's own reads hold no personal data and are not audited.
		if n := len(f.auditRows(t)); n != len(want) {
			t.Errorf("%d rows after reading the log, want %d", n, len(want))
		}
	})

	t.Run("fail closed", func(t *testing.T) {
		if _, err := f.pool.Exec(t.Context(), `ALTER SCHEMA access_audit RENAME TO access_audit_away`); err != nil {
			t.Fatal(err)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				if _, err := f.pool.Exec(t.Context(), `ALTER SCHEMA access_audit_away RENAME TO access_audit`); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Cleanup(restore)
		for _, path := range []string{"/v1/customers/" + alice, "/v1/customers?phone=13800138000"} {
			r := f.get(t, path, full)
			if e := decode[errorAnswer](t, r); r.status != http.StatusServiceUnavailable || e.Error.Code != "unavailable" ||
				r.header.Get("Retry-After") == "" || strings.Contains(string(r.body), "138") {
				t.Errorf("%s with the audit log down: %d %s", path, r.status, r.body)
			}
		}
		// Reads without personal data go on.
		if r := f.get(t, "/v1/customers/"+alice+"/timeline", nil); r.status != 200 {
			t.Errorf("timeline with the audit log down: %d", r.status)
		}
		restore()
		if r := f.get(t, "/v1/customers/"+alice, full); r.status != 200 {
			t.Errorf("after recovery: %d %s", r.status, r.body)
		}
	})
	f.assertNoPersonalData(t)
}

var cmpIgnoreIDAndTime = cmp.FilterPath(func(p cmp.Path) bool {
	s := p.String()
	return s == "ID" || s == "At"
}, cmp.Ignore())

// TestChurnDistribution: counts per state group and decile, for the manager.
func TestChurnDistribution(t *testing.T) {
	d := newDeskFixture(t)
	r := d.get(t, "/v1/churn/distribution", roleToken(access.Manager))
	dist := decode[query.ChurnDistributionResponse](t, r)
	var customers, scored int64
	if err := d.pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE score IS NOT NULL AND terminated_at IS NULL) FROM churn_v1.customers`).Scan(&customers, &scored); err != nil {
		t.Fatal(err)
	}
	var inBuckets int64
	for _, b := range dist.Buckets {
		inBuckets += b.Customers
	}
	if r.status != 200 || dist.Groups["stable"]+dist.Groups["warning"]+dist.Groups["churned"] != customers || inBuckets != scored ||
		dist.Groups["warning"] != 2 || dist.Groups["churned"] != 1 || len(dist.Buckets) != 10 {
		t.Errorf("distribution of %d customers (%d scored): %s", customers, scored, r.body)
	}
	if strings.Contains(string(r.body), "C-CH") {
		t.Errorf("the distribution names customers: %s", r.body)
	}
	r = d.get(t, "/v1/churn/distribution?region="+churnRegion, roleToken(access.Manager))
	if dist := decode[query.ChurnDistributionResponse](t, r); r.status != 200 || dist.Region != churnRegion || dist.Groups["warning"] != 2 {
		t.Errorf("one region: %s", r.body)
	}
	if r := d.get(t, "/v1/churn/distribution?tier=unobtainium", roleToken(access.Manager)); r.status != 400 {
		t.Errorf("unknown tier: %d", r.status)
	}
}
