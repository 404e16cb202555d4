package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/testkit"
)

// chromiumPath is Debian's chromium, which `make test` installs.
const chromiumPath = "/usr/bin/chromium"

// consoleServer serves the query API with the console and the operations API mounted
// beside it, over the serving read models of c, and returns its base URL.
func consoleServer(t *testing.T, c *cliEnv, keys events.KeySource) string {
	t.Helper()
	log := testkit.Logger(t)
	cmds, err := newCommandPublisher(t.Context(), c.nc, c.def.Layout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmds.Close() })
	// The development staff of deploy/access.json, as `make run` serves them.
	af := accessFlags{file: c.deployDir + "/access.json"}
	gate, auditLog, err := af.build(t.Context(), c.pool, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "audit log", 5*time.Second, auditLog.Run)
	opsR, closeOps, err := opsRoutes(t.Context(), &toolConn{pool: c.pool, nc: c.nc, js: c.js, def: c.def, cat: c.cat, log: log},
		projectorDeps{pool: c.pool, tiers: c.tiers, keys: keys, phoneKey: c.phoneKey, loyalty: c.loyalty, churn: c.churn}, gate.Authorize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeOps)
	con, conRoutes, err := buildConsole(c.pool, log, opsR, gate)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = con.Run(t.Context()) }()
	srv, err := buildQuery(queryFlags{addr: "127.0.0.1:0"}, queryDeps{db: c.pool, keys: keys, layout: c.def.Layout, tiers: c.tiers,
		phoneKey: c.phoneKey, log: log, loyalty: c.loyalty, commands: cmds, routes: conRoutes, gate: gate, audit: auditLog})
	if err != nil {
		t.Fatal(err)
	}
	mux := srv.Handler()
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// browser starts headless Chromium and returns a context to drive one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console tests drive Debian's chromium at %s: %v (make test installs it: apt-get install chromium)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, acancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil { // start the browser outside any step's deadline
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// step runs browser actions within 20 seconds.
func step(t *testing.T, bctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('app').innerText`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
	}
}

// read runs one browser action that returns a value, within 20 seconds.
func read[T any](t *testing.T, bctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('app').innerText`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
	}
	return v
}

// signIn signs the console in with a development token, signing out whoever was in.
func signIn(t *testing.T, bctx context.Context, base, token, staff string) {
	t.Helper()
	step(t, bctx, "sign in as "+staff,
		chromedp.Navigate(base+"/console/"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`),
		chromedp.Reload(),
		chromedp.WaitVisible(css(`#token-input`)),
		chromedp.SendKeys(css(`#token-input`), token),
		chromedp.Click(css(`#signin-button`)),
	)
	read(t, bctx, "signed in as "+staff, chromedp.Poll[bool](fmt.Sprintf(`document.getElementById('whoami').textContent.startsWith(%q)`, staff+" ")))
}

// css is a CSS selector.
func css(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }

// eventually polls cond every 200ms for at most 20 seconds.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; last: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getJSON reads an API answer as the development supervisor; the status and body
// for the failure message.
func getJSON(t *testing.T, u string, into any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer dev-supervisor-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK && into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
	}
	return res.StatusCode, string(b)
}

func newEvent(t *testing.T, customer, source string, at time.Time, p events.Payload) *events.Event {
	t.Helper()
	ev, err := events.NewEvent(customer, at, p)
	if err != nil {
		t.Fatal(err)
	}
	ev.Source = source
	return ev
}

const (
	srcStore     = "urn:touchstream:channel:store"
	srcRecharge  = "urn:touchstream:channel:recharge"
	srcCalls     = "urn:touchstream:channel:callcenter"
	srcNumbering = "urn:touchstream:channel:numbering"
)

// driftingHistory is projections/churn's drifting customer: weekly recharges from
// June, then silence, a call to the retention queue and a port-out request in
// September, which raise a churn alert.
func driftingHistory(t *testing.T, customer string, plan events.Plan) []*events.Event {
	t.Helper()
	cst := time.FixedZone("CST", 8*3600)
	evs := []*events.Event{newEvent(t, customer, srcStore, time.Date(2026, 6, 1, 10, 0, 0, 0, cst), events.CustomerRegistered{
		Name: events.Clear("测试"), Phone: events.Clear("13800138002"), CustomerType: "individual", Segment: "youth", Region: "CN-GD-SZ", Plan: plan})}
	for day := 0; day < 90; day += 7 {
		evs = append(evs, newEvent(t, customer, srcRecharge, time.Date(2026, 6, 2, 12, 0, 0, 0, cst).AddDate(0, 0, day),
			events.RechargeCompleted{RechargeID: fmt.Sprintf("%s-R%d", customer, day), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"}))
	}
	return append(evs,
		newEvent(t, customer, srcCalls, time.Date(2026, 9, 10, 9, 0, 0, 0, cst), events.CallCompleted{CallID: customer + "-CALL1", Direction: "inbound",
			Queue: "retention", WaitSeconds: 12, HandlingSeconds: 300, Answered: true, Outcome: "resolved"}),
		newEvent(t, customer, srcNumbering, time.Date(2026, 9, 12, 9, 0, 0, 0, cst), events.PortOutRequested{RequestID: customer + "-PO1", TargetOperator: "unicom", Reason: "price"}))
}

// TestConsole drives the real console in headless Chromium over a real stack (log,
// projector, read models, query API): search a customer and see the profile masked;
// publish an event and see it appear live on the timeline; acknowledge a churn alert
// in the queue and see it in the customer's history; see a new alert appear live in
// the queue; see the service level computed from a known set of calls.
func TestConsole(t *testing.T) {
	bctx := browser(t)
	c := newCLIEnv(t)
	keys := testkit.NewKeys()
	d := c.projectorDeps(t)
	d.keys = keys
	proj, err := buildProjector(projectorFlags{instance: "console-test"}, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- proj.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("projector: %v", err)
		}
	})
	// The drifting customer's history is months old: no late-arrival limit, as a
	// backfill publishes.
	pub, err := events.NewPublisher(t.Context(), c.nc, events.WithLayout(c.def.Layout), events.WithKeys(keys),
		events.WithLimits(events.Limits{MaxSize: 64 << 10, MaxFuture: 5 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	publish := func(evs ...*events.Event) {
		t.Helper()
		for i, r := range pub.PublishBatch(t.Context(), evs) {
			if r.Err != nil {
				t.Fatalf("publish %s: %v", evs[i].Type, r.Err)
			}
		}
	}
	base := consoleServer(t, c, keys)

	cst := time.FixedZone("CST", 8*3600)
	now := time.Now().In(cst)
	plan := events.Plan{ID: "PRE-59", Name: "59元畅享卡", Kind: "prepaid", MonthlyFee: events.CNY(5900)}
	publish(newEvent(t, "C-CON-1", srcStore, now.Add(-48*time.Hour), events.CustomerRegistered{Name: events.Clear("张伟"),
		Phone: events.Clear("13800138001"), CustomerType: "individual", Segment: "youth", Region: "CN-GD-SZ", Plan: plan}))
	drifting := "C-CON-2"
	publish(driftingHistory(t, drifting, plan)...)
	// The known calls: four inbound on the care queue an hour ago, three answered
	// within 20 s (waits 5, 12, 20 s), one after 40 s; an outbound call, which the
	// answer rate does not count. 3 of 4: 75.0%.
	hour := now.Add(-time.Hour).Truncate(time.Hour)
	for i, w := range []struct {
		dir  string
		wait int
	}{{"inbound", 5}, {"inbound", 12}, {"inbound", 20}, {"inbound", 40}, {"outbound", 3}} {
		publish(newEvent(t, "C-CON-1", srcCalls, hour.Add(time.Duration(i+1)*time.Minute), events.CallCompleted{CallID: fmt.Sprintf("C-CON-1-SL%d", i),
			Direction: w.dir, Queue: "care", WaitSeconds: w.wait, HandlingSeconds: 120, Answered: true, Outcome: "resolved"}))
	}

	// The projector folds what was published.
	eventually(t, "customer C-CON-1 in the read model", func() (bool, string) {
		code, body := getJSON(t, base+"/v1/customers/C-CON-1", nil)
		return code == http.StatusOK, fmt.Sprint(code, " ", body)
	})

	t.Run("signing in", func(t *testing.T) {
		step(t, bctx, "the console asks for a token",
			chromedp.Navigate(base+"/console/"),
			chromedp.WaitVisible(css(`#token-input`)),
			chromedp.SendKeys(css(`#token-input`), "not-a-token"),
			chromedp.Click(css(`#signin-button`)),
		)
		read(t, bctx, "the refusal", chromedp.Poll[bool](`document.getElementById('signin-status').textContent.includes('not accepted')`))
		if n := read(t, bctx, "visible pages", chromedp.Evaluate[int](`[...document.querySelectorAll('#nav a')].filter(a => !a.hidden).length`)); n != 0 {
			t.Errorf("%d pages offered before signing in", n)
		}
	})

	t.Run("search shows the profile masked", func(t *testing.T) {
		signIn(t, bctx, base, "dev-agent-token", "dev-agent")
		result := css(`a[data-testid=search-result][data-customer="C-CON-1"]`)
		step(t, bctx, "search by phone",
			chromedp.Navigate(base+"/console/#/customer"),
			chromedp.WaitVisible(css(`#search-input`)),
			chromedp.SendKeys(css(`#search-input`), "13800138001"),
			chromedp.Click(css(`#search-button`)),
			chromedp.WaitVisible(result),
			chromedp.Click(result),
			chromedp.WaitVisible(css(`[data-testid=profile-id]`)),
		)
		id := read(t, bctx, "profile id", chromedp.Text(css(`[data-testid=profile-id]`)))
		name := read(t, bctx, "profile name", chromedp.Text(css(`[data-testid=profile-name]`)))
		phone := read(t, bctx, "profile phone", chromedp.Text(css(`[data-testid=profile-phone]`)))
		if id != "C-CON-1" || name != "张*" || phone != "138****8001" {
			t.Errorf("profile shows id %q name %q phone %q, want C-CON-1, 张*, 138****8001 (masked)", id, name, phone)
		}
		// The search box holds what the user typed (a property, not in the markup);
		// nowhere else may the clear number or name appear.
		html := read(t, bctx, "page", chromedp.OuterHTML(css(`#app`)))
		if strings.Contains(html, "13800138001") || strings.Contains(html, "张伟") {
			t.Errorf("the page shows personal data in clear:\n%s", html)
		}
	})

	t.Run("a published event appears live on the timeline", func(t *testing.T) {
		step(t, bctx, "open the customer with its live stream",
			chromedp.Navigate(base+"/console/#/customer/C-CON-1"),
			chromedp.WaitReady(css(`#timeline[data-live=open]`)),
			chromedp.WaitVisible(css(`#timeline li[data-type="customer.registered"]`)),
		)
		before := read(t, bctx, "location", chromedp.Location())
		ev := newEvent(t, "C-CON-1", srcStore, time.Now(), events.StoreVisited{StoreID: "SZ-001", Purpose: "inquiry"})
		publish(ev)
		step(t, bctx, "see the new entry without reload", chromedp.WaitVisible(css(`#timeline li.live[data-id=%q]`, ev.ID)))
		if after := read(t, bctx, "location", chromedp.Location()); before != after {
			t.Errorf("the page moved from %s to %s", before, after)
		}
		if n := read(t, bctx, "navigations", chromedp.Evaluate[int](`performance.getEntriesByType('navigation').length`)); n != 1 {
			t.Errorf("%d navigations, want 1 (no reload)", n)
		}
	})

	t.Run("acknowledging an alert reaches the customer's history", func(t *testing.T) {
		var queue struct {
			Items []struct {
				AlertID    string `json:"alert_id"`
				CustomerID string `json:"customer_id"`
			} `json:"items"`
		}
		alertID := ""
		eventually(t, "an alert for "+drifting, func() (bool, string) {
			code, body := getJSON(t, base+"/v1/churn/alerts?limit=100", &queue)
			for _, a := range queue.Items {
				if a.CustomerID == drifting {
					alertID = a.AlertID
				}
			}
			return alertID != "", fmt.Sprint(code, " ", body)
		})
		row := fmt.Sprintf(`tr[data-testid=alert-row][data-alert=%q]`, alertID)
		signIn(t, bctx, base, "dev-retention-token", "dev-retention")
		step(t, bctx, "acknowledge in the queue",
			chromedp.Navigate(base+"/console/#/alerts"),
			chromedp.WaitVisible(chromedp.CSS(row+`[data-state=open]`)),
			chromedp.Click(chromedp.CSS(row+` [data-testid=ack-button]`)),
		)
		status := read(t, bctx, "the acknowledgement's answer", chromedp.Poll[string](
			fmt.Sprintf(`(document.querySelector('[data-testid=action-status][data-alert=%q]')||{}).textContent||false`, alertID),
			chromedp.WithPollingInterval(100*time.Millisecond)))
		if !strings.Contains(status, "sent") {
			t.Fatalf("acknowledge: %q", status)
		}
		acked := fmt.Sprintf(`[data-testid=churn-alert][data-alert=%q][data-state=acknowledged]`, alertID)
		step(t, bctx, "open the customer",
			chromedp.Navigate(base+"/console/#/customer/"+drifting),
			chromedp.WaitReady(css(`#timeline[data-live=open]`)),
		)
		// The churn panel refreshes on the customer's live events; reload the page
		// when the acknowledgement landed before the stream opened.
		eventually(t, "the alert acknowledged on the customer page", func() (bool, string) {
			n, _ := chromedp.Run(bctx, chromedp.Evaluate[int](fmt.Sprintf(
				`document.querySelectorAll(%q).length + 10*document.querySelectorAll('#timeline li[data-type="alert.acknowledged"]').length`, acked)))
			if n == 11 {
				return true, ""
			}
			txt, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.getElementById('churn')||{}).innerText`))
			if n == 0 {
				_ = chromedp.Do(bctx, chromedp.Reload())
			}
			return false, fmt.Sprintf("found %d (alert rows + 10 × timeline entries); churn panel: %s", n, txt)
		})
		by := read(t, bctx, "who acknowledged", chromedp.Text(chromedp.CSS(acked+` td:nth-child(4)`)))
		if !strings.HasPrefix(by, "dev-retention") {
			t.Errorf("acknowledged by %q, want dev-retention (the token's staff member)", by)
		}
	})

	t.Run("a new alert appears in the open queue", func(t *testing.T) {
		step(t, bctx, "open the queue with its live stream",
			chromedp.Navigate(base+"/console/#/alerts"),
			chromedp.WaitReady(css(`#alerts-body[data-live=open]`)),
		)
		publish(driftingHistory(t, "C-CON-3", plan)...)
		step(t, bctx, "see the new alert without reload", chromedp.WaitVisible(css(`tr.new[data-testid=alert-row][data-customer="C-CON-3"]`)))
		if n := read(t, bctx, "navigations", chromedp.Evaluate[int](`performance.getEntriesByType('navigation').length`)); n != 1 {
			t.Errorf("%d navigations, want 1 (no reload)", n)
		}
	})

	t.Run("the service level shows the rate of the known calls", func(t *testing.T) {
		from, to := hour.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)
		q := url.Values{"queue": {"care"}, "from": {from}, "to": {to}}
		var rate struct {
			Total struct {
				Offered int64 `json:"offered"`
			} `json:"total"`
		}
		eventually(t, "the calls in the service-level read model", func() (bool, string) {
			code, body := getJSON(t, base+"/v1/service-level/answer-rate?"+q.Encode(), &rate)
			return rate.Total.Offered == 4, fmt.Sprint(code, " ", body)
		})
		signIn(t, bctx, base, "dev-manager-token", "dev-manager")
		step(t, bctx, "open the service level",
			chromedp.Navigate(base+"/console/#/service-level?"+q.Encode()),
			chromedp.WaitVisible(css(`#sl-total-rate`)),
			chromedp.WaitVisible(css(`#sl-chart svg circle`)),
		)
		if shown := read(t, bctx, "the answer rate", chromedp.Text(css(`#sl-total-rate`))); shown != "75.0%" {
			t.Errorf("the page shows an answer rate of %q, want 75.0%% (3 of 4 within 20 s)", shown)
		}
	})

	t.Run("an agent sees neither the queue's actions nor clear phone numbers; a supervisor does", func(t *testing.T) {
		signIn(t, bctx, base, "dev-agent-token", "dev-agent")
		if hidden := read(t, bctx, "the queue's link", chromedp.Evaluate[bool](`document.querySelector('[data-testid=nav-alerts]').hidden`)); !hidden {
			t.Error("the agent is offered the churn queue")
		}
		step(t, bctx, "the queue refused",
			chromedp.Navigate(base+"/console/#/alerts"),
			chromedp.WaitVisible(css(`[data-testid=page-forbidden]`)),
		)
		if n := read(t, bctx, "actions", chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=ack-button]').length`)); n != 0 {
			t.Errorf("the agent sees %d acknowledge buttons", n)
		}
		step(t, bctx, "the agent's profile",
			chromedp.Navigate(base+"/console/#/customer/C-CON-1"),
			chromedp.WaitVisible(css(`[data-testid=profile-phone]`)),
		)
		if phone := read(t, bctx, "phone", chromedp.Text(css(`[data-testid=profile-phone]`))); phone != "138****8001" {
			t.Errorf("the agent sees phone %q, want 138****8001", phone)
		}
		if n := read(t, bctx, "churn panel", chromedp.Evaluate[int](`document.querySelectorAll('#churn').length`)); n != 0 {
			t.Error("the agent sees the churn panel")
		}

		signIn(t, bctx, base, "dev-supervisor-token", "dev-supervisor")
		step(t, bctx, "the supervisor's queue",
			chromedp.Navigate(base+"/console/#/alerts"),
			chromedp.WaitVisible(css(`tr[data-testid=alert-row] [data-testid=ack-button]`)),
		)
		step(t, bctx, "the supervisor's profile",
			chromedp.Navigate(base+"/console/#/customer/C-CON-1"),
			chromedp.WaitVisible(css(`[data-testid=profile-phone]`)),
		)
		if phone := read(t, bctx, "phone", chromedp.Text(css(`[data-testid=profile-phone]`))); phone != "13800138001" {
			t.Errorf("the supervisor sees phone %q, want 13800138001 in clear", phone)
		}
		if note := read(t, bctx, "access note", chromedp.Text(css(`#access-note`))); !strings.Contains(note, "in clear") {
			t.Errorf("access note %q", note)
		}
		// Both reads are in the access audit log, masked and clear.
		step(t, bctx, "the audit page",
			chromedp.Navigate(base+"/console/#/audit?customer=C-CON-1"),
			chromedp.WaitVisible(css(`[data-testid=audit-entry]`)),
		)
		txt := read(t, bctx, "audit entries", chromedp.Text(css(`#audit-reads`)))
		if !strings.Contains(txt, "dev-agent") || !strings.Contains(txt, "dev-supervisor") || !strings.Contains(txt, "masked") || !strings.Contains(txt, "full") {
			t.Errorf("audit page:\n%s", txt)
		}
	})

	t.Run("every page loads without breaking", func(t *testing.T) {
		for _, who := range []struct {
			token, staff string
			pages        []string
		}{
			{"dev-supervisor-token", "dev-supervisor", []string{"loyalty", "alerts", "service-level", "audit"}},
			{"dev-operator-token", "dev-operator", []string{"ops", "audit"}},
		} {
			signIn(t, bctx, base, who.token, who.staff)
			for _, page := range who.pages {
				step(t, bctx, "open "+page,
					chromedp.Navigate(base+"/console/#/"+page),
					chromedp.WaitVisible(css(`#app[data-page=%q] .panel`, page)),
				)
				read(t, bctx, "panels of "+page, chromedp.Poll[bool](`[...document.querySelectorAll('.panel')].every(p => p.dataset.loaded || p.id === 'alerts')`))
				errs := read(t, bctx, "errors of "+page, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid=panel-error]')].map(e => e.textContent).join('\\n')`))
				if errs != "" {
					t.Errorf("%s, %s: panels failed:\n%s", who.staff, page, errs)
				}
			}
		}
	})
}
