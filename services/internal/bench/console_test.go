package bench

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// appJS is the console the suite's pages are encoded from.
const appJS = "../console/assets/app.js"

func readAppJS(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(appJS)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// appRequests are the requests app.js writes: api('/path'), api(`/path`, { method:
// 'POST' }), post(`/path`, ...), by method and path as written.
func appRequests(js string) map[string]bool {
	re := regexp.MustCompile("\\b(api|post)\\(\\s*[`']([^`']+)[`'](\\s*,\\s*\\{\\s*method:\\s*'POST')?")
	out := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(js, -1) {
		method := http.MethodGet
		if m[1] == "post" || m[3] != "" {
			method = http.MethodPost
		}
		out[method+" "+m[2]] = true
	}
	return out
}

// notOnLoad are the requests of app.js that no page makes as it opens, with why.
var notOnLoad = map[string]string{
	"GET /v1/churn/alerts?limit=100&cursor=${enc(next)}": "the alert queue's More button",
	"POST ${base}/acknowledge":                           "the retention desk's actions on an alert",
	"POST ${base}/actions":                               "the retention desk's actions on an alert",
	"POST ${base}/close":                                 "the retention desk's actions on an alert",
}

// TestConsolePagesFollowAppJS: every request the suite makes is one app.js writes, with
// the same method, and every request app.js writes is made by a page or is one that
// no page makes as it opens.
func TestConsolePagesFollowAppJS(t *testing.T) {
	written := appRequests(readAppJS(t))
	if len(written) < 10 {
		t.Fatalf("found %d requests in %s: the pattern no longer matches how app.js calls the API", len(written), appJS)
	}
	made := map[string]bool{}
	for _, p := range consolePages {
		for _, step := range p.steps {
			for _, c := range step {
				req := c.method + " " + c.path
				made[req] = true
				if !written[req] {
					t.Errorf("page %s: %s is not a request of %s", p.name, req, appJS)
				}
			}
		}
	}
	for req := range written {
		if !made[req] && notOnLoad[req] == "" {
			t.Errorf("%s requests %s, which no page of the suite makes: add it to its page or to notOnLoad", appJS, req)
		}
	}
}

// TestConsolePagesReadyMarkers: the selectors the browser waits for are markers that
// app.js renders, and pages with one route key wait for the same markers.
func TestConsolePagesReadyMarkers(t *testing.T) {
	js := readAppJS(t)
	if !strings.Contains(js, "p.dataset.loaded = 'true'") {
		t.Errorf("%s no longer marks a loaded panel with data-loaded=true", appJS)
	}
	testid := regexp.MustCompile(`data-testid=([a-z0-9-]+)`)
	byKey := map[string][]string{}
	for _, p := range consolePages {
		if len(p.ready) == 0 {
			t.Errorf("page %s: no ready selector", p.name)
		}
		for _, sel := range slices.Concat(p.ready, p.found) {
			for _, m := range testid.FindAllStringSubmatch(sel, -1) {
				if !strings.Contains(js, "'data-testid': '"+m[1]+"'") && !strings.Contains(js, "panel('"+m[1]+"'") {
					t.Errorf("page %s: %s renders no data-testid %q", p.name, appJS, m[1])
				}
			}
		}
		k := routeKey(p.route)
		if prev, ok := byKey[k]; ok {
			if diff := cmp.Diff(prev, p.ready); diff != "" {
				t.Errorf("page %s: route key %q waits for other markers than an earlier page (-earlier +this):\n%s", p.name, k, diff)
			}
		}
		byKey[k] = p.ready
	}
}

func TestRouteKey(t *testing.T) {
	for _, tc := range []struct{ route, want string }{
		{"#/customer/C000000001", "customer/{id}"},
		{"#/customer", "customer"},
		{"#/service-level?from=a&to=b", "service-level"},
		{"#/", ""},
	} {
		if got := routeKey(tc.route); got != tc.want {
			t.Errorf("routeKey(%q) = %q, want %q", tc.route, got, tc.want)
		}
	}
}

func TestConsolePageReplacer(t *testing.T) {
	var customer, sl consolePage
	for _, p := range consolePages {
		switch p.name {
		case "customer 360":
			customer = p
		case "service level (a day of the data set)":
			sl = p
		}
	}
	for _, tc := range []struct {
		name      string
		page      consolePage
		path      string
		want      string
		wantRoute string
	}{
		{"customer timeline, no filter", customer, "/v1/customers/${enc(id)}/timeline?${q}", "/v1/customers/C000000042/timeline?", "#/customer/C000000042"},
		{"search by phone", customer, "/v1/customers?phone=${enc(q)}", "/v1/customers?phone=%2B8613800138000", "#/customer/C000000042"},
		{"service level period", sl, "/v1/service-level/breaches?${period()}",
			"/v1/service-level/breaches?from=2026-10-24T16%3A00%3A00Z&to=2026-10-25T16%3A00%3A00Z",
			"#/service-level?from=2026-10-24T16%3A00%3A00Z&to=2026-10-25T16%3A00%3A00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.page.replacer("C000000042", "+8613800138000")
			if got := r.Replace(tc.path); got != tc.want {
				t.Errorf("path = %q, want %q", got, tc.want)
			}
			if got := r.Replace(tc.page.route); got != tc.wantRoute {
				t.Errorf("route = %q, want %q", got, tc.wantRoute)
			}
		})
	}
}
