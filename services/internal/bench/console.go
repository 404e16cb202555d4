package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/query"
)

// The console suite's settings.
const (
	consoleRate     = 20 // page loads per second, open loop, the pages in turn
	consoleDuration = 30 * time.Second
	consoleWarmUp   = 3 * time.Second
	// Each page alone, at its share of consoleRate.
	consoleAloneTime   = 20 * time.Second
	consoleAloneWarmUp = 2 * time.Second
	consoleRawRate     = 100 // each raw measurement, per second
	consoleRawTime     = 10 * time.Second
	consoleTarget      = 300 * time.Millisecond // issue 7: pages answer within 300 ms
	consoleLoads       = 20                     // browser loads of each page
	consolePhones      = 500                    // customers whose phone numbers the searches draw from
	consoleAsset       = "/console/styles.css"  // the raw HTTP round trip
	// chromiumPath is Debian's chromium, which `make bench` installs
	// (scripts/ensure-chromium.sh).
	chromiumPath = "/usr/bin/chromium"
)

// consoleRoles are the roles the suite's token carries: every page of the console
// shown, personal fields masked (no supervisor).
var consoleRoles = []access.Role{access.Agent, access.Retention, access.Manager, access.Operator}

// consoleSchemas are the read models the console reads beyond those the projector's
// data set is folded into (timeline, customer 360): the console suite folds them over
// the same log first.
var consoleSchemas = []string{query.DefaultLoyaltyTarget, query.DefaultChurnTarget, query.DefaultServiceLevelTarget}

// apiCall is one request a console page makes, its path written as app.js writes it,
// variables included (see consolePage.replacer).
type apiCall struct {
	method string
	path   string
	absent bool // 404 is an answer the page shows ("not a club member", "no score yet")
}

func apiGet(path string) apiCall  { return apiCall{method: http.MethodGet, path: path} }
func apiPost(path string) apiCall { return apiCall{method: http.MethodPost, path: path} }

func (c apiCall) orAbsent() apiCall { c.absent = true; return c }

// consolePage is a page of the web console as it loads: the requests it makes, step
// after step (each step's requests at once), and what the browser shows when its data
// is rendered.
type consolePage struct {
	name  string
	route string // the console's hash route
	// q is the page's query string, ${q} and ${period()} in app.js.
	q     string
	steps [][]apiCall
	// ready are CSS selectors that all match once the page's data is rendered.
	ready []string
	// found, for the search: once ready matches, a phone number is typed into the
	// search form and submitted; the search is rendered when found matches, and its
	// time is counted from the submit.
	found []string
}

// session is the first step of a page opened by its address: app.js asks who the
// token is (GET /v1/session) before it renders anything.
var session = []apiCall{apiGet("/v1/session")}

// loaded are the selectors of panels (app.js panel()) that have loaded their data.
func loaded(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("[data-testid=%s][data-loaded=true]", id)
	}
	return out
}

// consolePages are the console's pages, encoded from
// services/internal/console/assets/app.js: each page function's requests in the order
// it issues them. Panels (panel()) load side by side, each starting its request as it
// is built; Promise.all and Promise.allSettled issue theirs at once. A page opened by
// its address first awaits GET /v1/session (the start of app.js), then renders. The
// live streams' tickets (POST /v1/stream/tickets) are requested as the pages do; the
// EventSource streams themselves are not opened by the HTTP measurement (they never
// answer: they stream), the browser opens them.
var consolePages = []consolePage{
	// customerPage: the churn panel is built first, then profile, loyalty, complaints
	// and the timeline, whose stream asks for a ticket (timelinePanel, stream).
	{name: "customer 360", route: "#/customer/${enc(id)}", steps: [][]apiCall{session, {
		apiGet("/v1/churn/customers/${enc(id)}").orAbsent(),         // loadChurn: 404 is "no churn score yet"
		apiGet("/v1/customers/${enc(id)}"),                          // loadProfile
		apiGet("/v1/loyalty/members/${enc(id)}").orAbsent(),         // loadMember: 404 is "not a club member"
		apiGet("/v1/customers/${enc(id)}"),                          // loadComplaints: the profile again,
		apiGet("/v1/customers/${enc(id)}/complaints"),               // with the service-level view (allSettled)
		apiGet("/v1/customers/${enc(id)}/timeline?${q}").orAbsent(), // timelinePanel, no filter
		apiPost("/v1/stream/tickets"),                               // the timeline's live stream
	}}, ready: loaded("profile", "loyalty-member", "complaints", "churn", "timeline-panel")},
	// searchForm's submit with a phone number: one request, on the open page.
	{name: "search by phone (submit)", route: "#/customer", steps: [][]apiCall{{apiGet("/v1/customers?phone=${enc(q)}")}},
		ready: []string{"[data-testid=search-input]"}, found: []string{"[data-testid=search-result], [data-testid=search-empty]"}},
	// alertsPage: reload(), then the alerts stream.
	{name: "churn alert queue", route: "#/alerts", steps: [][]apiCall{session, {apiGet("/v1/churn/alerts?limit=100"), apiPost("/v1/stream/tickets")}},
		ready: []string{"[data-testid=alerts-table], [data-testid=alerts-empty]"}},
	// loyaltyPage: one panel.
	{name: "loyalty club", route: "#/loyalty", steps: [][]apiCall{session, {apiGet("/v1/loyalty/totals?months=12")}},
		ready: loaded("loyalty-totals")},
	// serviceLevelPage with no period: the last 24 hours of the wall clock. Three panels.
	{name: "service level (default: last 24 h)", route: "#/service-level", steps: [][]apiCall{session, {
		apiGet("/v1/service-level/answer-rate?${q}"), apiGet("/v1/service-level/summary"), apiGet("/v1/service-level/breaches?${period()}"),
	}}, ready: loaded("sl-rate", "sl-summary", "sl-breaches")},
	// serviceLevelPage with from and to (#/service-level?from=&to=): the data set's last day.
	{name: "service level (a day of the data set)", route: "#/service-level?${q}", q: dataSetDay(), steps: [][]apiCall{session, {
		apiGet("/v1/service-level/answer-rate?${q}"), apiGet("/v1/service-level/summary"), apiGet("/v1/service-level/breaches?${period()}"),
	}}, ready: loaded("sl-rate", "sl-summary", "sl-breaches")},
	// opsPage: the status panel, and the dead letters panel asking for the status again
	// beside the parked list (Promise.all).
	{name: "operations", route: "#/ops", steps: [][]apiCall{session, {
		apiGet("/v1/ops/status"), apiGet("/v1/ops/status"), apiGet("/v1/ops/dead-letters?status=parked&limit=50"),
	}}, ready: loaded("ops-status", "ops-dlq")},
	// auditPage with no filter: new URLSearchParams({ limit: '100' }).
	{name: "access audit", route: "#/audit", q: "limit=100", steps: [][]apiCall{session, {apiGet("/v1/audit/access?${q}")}},
		ready: loaded("audit-reads")},
}

// dataSetDay is the period of the data set's last day, as the service-level page's
// from and to carry it.
func dataSetDay() string {
	end := epoch.Add(span)
	return url.Values{"from": {end.Add(-24 * time.Hour).UTC().Format(time.RFC3339)}, "to": {end.UTC().Format(time.RFC3339)}}.Encode()
}

// replacer fills the page's variables: the customer and the search, escaped as
// encodeURIComponent does, and the page's query string.
func (p consolePage) replacer(customer, phone string) *strings.Replacer {
	return strings.NewReplacer("${enc(id)}", url.PathEscape(customer), "${enc(q)}", url.QueryEscape(phone), "${q}", p.q, "${period()}", p.q)
}

// open loads the page through the API as the console does, and returns when the
// last request has answered.
func (p consolePage) open(ctx context.Context, client *http.Client, base, token string, r *strings.Replacer) error {
	for _, step := range p.steps {
		errs := make(chan error, len(step))
		for _, c := range step {
			go func() { errs <- c.send(ctx, client, base, token, r) }()
		}
		var err error
		for range step {
			if e := <-errs; err == nil {
				err = e
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// send makes the request and reads the answer; errors name the path as app.js writes
// it (never a phone number).
func (c apiCall) send(ctx context.Context, client *http.Client, base, token string, r *strings.Replacer) error {
	status, err := fetch(ctx, client, c.method, base+r.Replace(c.path), token)
	switch {
	case err != nil:
		return fmt.Errorf("%s %s: %w", c.method, c.path, err)
	case status/100 == 2, status == http.StatusNotFound && c.absent:
		return nil
	}
	return fmt.Errorf("%s %s: status %d", c.method, c.path, status)
}

// fetch makes a request as the console does (Accept: application/json, the bearer
// token when given) and reads the answer to its end.
func fetch(ctx context.Context, client *http.Client, method, url, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// calls describes a page's requests: "1 + 7" is one, then seven at once.
func (p consolePage) calls() string {
	n := make([]string, len(p.steps))
	for i, s := range p.steps {
		n[i] = fmt.Sprint(len(s))
	}
	return strings.Join(n, " + ")
}

// console measures the web console's pages over the projector's data set: each page's
// requests through the real query service (the console mounted as `touchstream query`
// serves it) in an open loop, and each page loaded in headless Chromium until its data
// is rendered, beside a raw HTTP round trip to the same server and raw PostgreSQL point
// reads.
func (b *bench) console(ctx context.Context) error {
	if _, err := os.Stat(chromiumPath); err != nil {
		return fmt.Errorf("the browser measurement drives Debian's headless chromium at %s: %w (make bench installs it: scripts/ensure-chromium.sh)", chromiumPath, err)
	}
	if b.d.Console == nil || b.d.Loyalty == nil || b.d.Churn == nil || b.d.ServiceLevel == nil {
		return errors.New("console suite: Deps.Console, Deps.Loyalty, Deps.Churn and Deps.ServiceLevel are required")
	}
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	fold, models, err := b.foldConsoleModels(ctx, ds)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(b.o.Seed, 95))
	phones, err := samplePhones(b.o.Seed, ds, consolePhones, rng)
	if err != nil {
		return err
	}
	load := loadAverage()
	base, token, stop, err := b.startConsole(ctx)
	if err != nil {
		return err
	}
	defer stop()
	client := newClient()
	defer client.CloseIdleConnections()

	// Every page once: a page that fails is a broken setup, not a figure.
	for _, p := range consolePages {
		if err := p.open(ctx, client, base, token, p.replacer(customerID(rng.IntN(ds.customers)), phones[0])); err != nil {
			return fmt.Errorf("console page %s: %w", p.name, err)
		}
	}

	// The pages through the API, open loop.
	n := int(consoleRate*(consoleDuration+consoleWarmUp).Seconds()) + 1
	replacers := make([]*strings.Replacer, n)
	for i := range replacers {
		replacers[i] = consolePages[i%len(consolePages)].replacer(customerID(rng.IntN(ds.customers)), phones[rng.IntN(len(phones))])
	}
	pageLat := make([]latencies, len(consolePages))
	var reported sync.Map
	warm := int(consoleRate * consoleWarmUp.Seconds())
	b.log.Info("console pages through the API", "rate", consoleRate, "seconds", consoleDuration.Seconds(), "pages", len(consolePages))
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}
	allRun := measureOpenLoop(ctx, consoleRate, consoleWarmUp, consoleDuration, func(i int, due time.Time) error {
		k := i % len(consolePages)
		p := consolePages[k]
		err := p.open(ctx, client, base, token, replacers[i])
		if i < warm {
			return err
		}
		if err != nil {
			if _, seen := reported.LoadOrStore(k, true); !seen {
				b.log.Warn("console page failed", "page", p.name, "err", err)
			}
			pageLat[k].fail()
			return err
		}
		pageLat[k].add(time.Since(due))
		return nil
	})
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}

	// Each page alone at its share of the rate: what the page costs by itself, apart
	// from what the others cost it.
	aloneRate := float64(consoleRate) / float64(len(consolePages))
	alone := make([]openLoopRun, len(consolePages))
	for k, p := range consolePages {
		rs := make([]*strings.Replacer, int(aloneRate*(consoleAloneTime+consoleAloneWarmUp).Seconds())+1)
		for i := range rs {
			rs[i] = p.replacer(customerID(rng.IntN(ds.customers)), phones[rng.IntN(len(phones))])
		}
		b.log.Info("console page alone", "page", p.name, "rate", aloneRate, "seconds", consoleAloneTime.Seconds())
		alone[k] = measureOpenLoop(ctx, aloneRate, consoleAloneWarmUp, consoleAloneTime, func(i int, _ time.Time) error {
			return p.open(ctx, client, base, token, rs[i])
		})
	}

	// Raw: a static asset of the same server, and the profile row by key.
	b.log.Info("raw HTTP round trips", "rate", consoleRawRate, "seconds", consoleRawTime.Seconds())
	httpRun := measureOpenLoop(ctx, consoleRawRate, 2*time.Second, consoleRawTime, func(int, time.Time) error {
		status, err := fetch(ctx, client, http.MethodGet, base+consoleAsset, "")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d", status)
		}
		return err
	})
	pgRun, err := b.rawProfileReads(ctx, rng, ds.customers, consoleRawRate, 2*time.Second, consoleRawTime)
	if err != nil {
		return err
	}

	// The pages in a browser.
	shown, err := b.browse(ctx, base, token, rng, ds.customers, phones)
	if err != nil {
		return err
	}

	// The churn suite folds its own history into this version: leave it as if this
	// suite had not run.
	if err := projections.DropTarget(ctx, b.e.pool, query.DefaultChurnTarget); err != nil {
		return err
	}

	t := newTable("console: the web console's pages through the real query service, open loop",
		"measure", "requests", "loads", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
		"alone p50 ms", "alone p99 ms", "alone errors", "p99 ÷ raw HTTP p99", "cpu self/machine", "target")
	t.note("%s", b.inputs("random customers (uniform) of the projector's population: %s customers, %s events; searches by the phone numbers of %s random customers as the history registered or last updated them (a later live update in the e2e suite may have changed a few: an empty answer, still a page)",
		count(ds.customers), count(ds.events), count(len(phones))))
	t.note("read models beyond the data set's customer 360 and timeline, folded first by the projector's code over the same log: %s (%s events in %s s, %s/s; then VACUUM (ANALYZE), CHECKPOINT)",
		models, count(fold.n), seconds(fold.elapsed), perSecond(fold.rate()))
	t.note("query service as `touchstream query` assembles it (the command's buildQuery and buildConsole: query API, loyalty routes, console assets and streams, read-only operations routes, stream tickets), on a 127.0.0.1 listener, PostgreSQL pool of 16, access audit log running; token roles %s (personal fields masked)",
		roleNames(consoleRoles))
	t.note("each page: its requests as app.js issues them (requests column: steps, each step's requests at once; the first step is GET /v1/session, as a page opened by its address asks), the page's time until its last answer; live streams (EventSource) not opened, their tickets requested")
	t.note("the pages together: in turn, %d page loads/s in all, scheduled open loop, latency from the scheduled time, %d s after %d s of warm-up; alone: each page by itself at its share of that rate (%.1f loads/s), %d s after %d s",
		consoleRate, int(consoleDuration.Seconds()), int(consoleWarmUp.Seconds()), aloneRate, int(consoleAloneTime.Seconds()), int(consoleAloneWarmUp.Seconds()))
	t.note("cpu: of the page alone on the page rows, of the pages together on the last row; PostgreSQL during the pages together (warm-up included): %s", pg0.until(pg1))
	t.note("raw: %d requests/s for %d s each: GET %s of the same server with the same client (no token); SELECT doc of one profile by key (pool of 16)",
		consoleRawRate, int(consoleRawTime.Seconds()), consoleAsset)
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	t.row("raw HTTP round trip, GET "+consoleAsset, "1", count(httpRun.lat.n), perSecond(httpRun.achieved), millis(httpRun.lat.p50), millis(httpRun.lat.p90),
		millis(httpRun.lat.p99), millis(httpRun.lat.pMax), count(httpRun.lat.errors), "", "", "", "", httpRun.cpu.String(), "")
	t.row("raw PostgreSQL point read, profile by key", "1", count(pgRun.lat.n), perSecond(pgRun.achieved), millis(pgRun.lat.p50), millis(pgRun.lat.p90),
		millis(pgRun.lat.p99), millis(pgRun.lat.pMax), count(pgRun.lat.errors), "", "", "", "", pgRun.cpu.String(), "")
	for k, p := range consolePages {
		s, a := pageLat[k].summarize(), alone[k].lat
		t.row(p.name, p.calls(), count(s.n), perSecond(float64(s.n)/consoleDuration.Seconds()), millis(s.p50), millis(s.p90), millis(s.p99), millis(s.pMax),
			count(s.errors), millis(a.p50), millis(a.p99), count(a.errors), ratio(float64(s.p99), float64(httpRun.lat.p99)), alone[k].cpu.String(),
			verdict(s.n > 0 && s.errors == 0 && s.p99 < consoleTarget, "p99 < 300 ms"))
	}
	t.row("all pages together", "", count(allRun.lat.n), perSecond(allRun.achieved), millis(allRun.lat.p50), millis(allRun.lat.p90), millis(allRun.lat.p99),
		millis(allRun.lat.pMax), count(allRun.lat.errors), "", "", "", ratio(float64(allRun.lat.p99), float64(httpRun.lat.p99)), allRun.cpu.String(), "")
	if err := t.write(b.out); err != nil {
		return err
	}
	return shown.write(b.out)
}

// foldConsoleModels folds the loyalty ledger (pinned to a rule version: the data set
// activates none), the churn read model and the service levels over the log into
// their default versions, as the projector builds them (no signals: these are not
// live), then settles them as the data set was. It returns the fold and what it built.
func (b *bench) foldConsoleModels(ctx context.Context, ds *dataset) (measured, string, error) {
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return measured{}, "", err
	}
	defer pool.Close()
	nc, err := b.e.connect("touchstream-bench-console-fold")
	if err != nil {
		return measured{}, "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return measured{}, "", err
	}
	lp, err := b.d.Loyalty(query.DefaultLoyaltyTarget, loyaltyPin)
	if err != nil {
		return measured{}, "", err
	}
	cp, err := b.d.Churn(query.DefaultChurnTarget)
	if err != nil {
		return measured{}, "", err
	}
	sp, err := b.d.ServiceLevel(query.DefaultServiceLevelTarget)
	if err != nil {
		return measured{}, "", err
	}
	r, err := projections.NewRunner(projections.Config{Group: "bench-console", BatchSize: projectorBatch, Linger: projectorLinger},
		projections.Deps{Pool: pool, JS: js, Layout: b.e.layout, Catalog: b.e.cat, Log: b.svcLog.With("service", "projector"),
			Registry: prometheus.NewRegistry(),
			History: &projections.LogHistory{Index: &timeline.Index{Target: query.DefaultTimelineTarget, Layout: b.e.layout}, JS: js,
				Decoder: projections.NewDecoder(b.e.layout, b.e.cat)}}, lp, cp, sp)
	if err != nil {
		return measured{}, "", err
	}
	if err := r.Prepare(ctx); err != nil {
		return measured{}, "", err
	}
	var applied atomic.Int64
	stop := every(5*time.Second, func() { b.log.Info("console read models catch-up", "events", applied.Load(), "of", ds.events) })
	fold, err := timed(0, func() error {
		return r.CatchUp(ctx, func(_, _ uint64, n int) { applied.Add(int64(n)) })
	})
	stop()
	if err != nil {
		return measured{}, "", fmt.Errorf("console read models catch-up: %w", err)
	}
	fold.n = int(applied.Load())

	rows, err := pool.Query(ctx, `SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1) ORDER BY 1, 2`, consoleSchemas)
	if err != nil {
		return measured{}, "", err
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var s, t string
		err := r.Scan(&s, &t)
		return pgx.Identifier{s, t}, err
	})
	if err != nil {
		return measured{}, "", err
	}
	for _, t := range tables {
		if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+t.Sanitize()); err != nil {
			return measured{}, "", fmt.Errorf("settle %s: %w", t.Sanitize(), err)
		}
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return measured{}, "", err
	}
	var members, scored, open, complaints int64
	if err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultLoyaltyTarget, "members"}.Sanitize()+`),
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultChurnTarget, "customers"}.Sanitize()+` WHERE score IS NOT NULL),
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultChurnTarget, "alerts"}.Sanitize()+` WHERE state <> 'closed'),
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultServiceLevelTarget, "complaints"}.Sanitize()+`)`).Scan(&members, &scored, &open, &complaints); err != nil {
		return measured{}, "", err
	}
	return fold, fmt.Sprintf("%s (%s members, rule version %s), %s (%s customers scored, %s alerts open), %s (%s complaints)",
		query.DefaultLoyaltyTarget, count(members), loyaltyPin, query.DefaultChurnTarget, count(scored), count(open),
		query.DefaultServiceLevelTarget, count(complaints)), nil
}

// samplePhones returns the phone numbers of n customers drawn from rng, as the data
// set's history gave them (the registration's, or the last customer.updated's): the
// history is generated again, as the preload generated it.
func samplePhones(seed uint64, ds *dataset, n int, rng *rand.Rand) ([]string, error) {
	want := map[string]bool{}
	for len(want) < min(n, ds.customers) {
		want[customerID(rng.IntN(ds.customers))] = true
	}
	registered, updated := events.CustomerRegistered{}.EventType(), events.CustomerUpdated{}.EventType()
	phones := map[string]string{}
	h := newHistory(seed, ds.events, ds.customers)
	for e := h.next(); e != nil; e = h.next() {
		if (e.Type != registered && e.Type != updated) || !want[e.Subject] {
			continue
		}
		var p struct {
			Phone string `json:"phone"`
		}
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return nil, fmt.Errorf("phone numbers: %s: %w", e.Type, err)
		}
		if p.Phone != "" {
			phones[e.Subject] = p.Phone
		}
	}
	ids := make([]string, 0, len(phones))
	for id := range phones {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = phones[id]
	}
	if len(out) == 0 {
		return nil, errors.New("phone numbers: none in the history")
	}
	return out, nil
}

// startConsole serves the query service with the console (Deps.Console), its live
// streams running, and returns its URL and a token with consoleRoles.
func (b *bench) startConsole(ctx context.Context) (string, string, func(), error) {
	return b.startAPI(ctx, "touchstream-bench-console", func(d QueryDeps, nc *nats.Conn) (http.Handler, func(), error) {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, nil, err
		}
		d.Roles = consoleRoles
		srv, run, release, err := b.d.Console(ctx, ConsoleDeps{QueryDeps: d, NC: nc, JS: js, Catalog: b.e.cat})
		if err != nil {
			return nil, nil, err
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := run(rctx); err != nil {
				b.log.Warn("console streams stopped", "err", err)
			}
		}()
		return srv.Handler(), func() { cancel(); <-done; release() }, nil
	})
}

func roleNames(rs []access.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// mark is what the page script (markScript) recorded, in milliseconds from the
// navigation's start (performance.now()).
type mark struct {
	Done   float64 `json:"done"`   // the page's ready selectors all matched, or an error line showed
	T0     float64 `json:"t0"`     // the search was submitted
	Shell  float64 `json:"shell"`  // DOMContentLoaded ended: the page and its scripts loaded
	Failed string  `json:"failed"` // the error line, when one showed
}

// markScript runs in every document before the console's scripts: it watches the DOM
// and records when the ready selectors of the page (by its route, as app.js routes)
// all match, or when an error shows: a panel's error line, the page refused, the
// sign-in page.
const markScript = `(() => {
  const wants = %s;
  const b = (window.__bench = { want: null, done: 0, t0: 0, failed: '' });
  const key = () => {
    const parts = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').filter(Boolean);
    return parts.length > 1 ? parts[0] + '/{id}' : parts[0] || '';
  };
  const check = () => {
    if (b.done) return;
    const want = b.want || wants[key()];
    if (!want) return;
    const err = document.querySelector('[data-testid=panel-error], [data-testid=page-forbidden], [data-testid=token-input]');
    if (err) { b.failed = err.textContent || err.dataset.testid; b.done = performance.now(); return; }
    if (want.every((s) => document.querySelector(s))) b.done = performance.now();
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true });
})();`

// markRead returns the page script's record once the page is done.
const markRead = `(() => {
  const b = window.__bench;
  if (!b || !b.done) return null;
  const nav = performance.getEntriesByType('navigation')[0];
  return { done: b.done, t0: b.t0, shell: nav ? nav.domContentLoadedEventEnd : 0, failed: b.failed };
})()`

// searchSubmit types a phone number into the search form and submits it, the page
// script then waiting for want.
const searchSubmit = `(() => {
  const b = window.__bench;
  b.want = %s; b.done = 0; b.failed = '';
  document.getElementById('search-input').value = %s;
  b.t0 = performance.now();
  document.getElementById('search-form').requestSubmit();
  return true;
})()`

// routeKey is a route as markScript keys it.
func routeKey(route string) string {
	path, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(route, "#"), "/"), "?")
	parts := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return parts[0] + "/{id}"
}

// pageWants are the ready selectors of every page by route key.
func pageWants() map[string][]string {
	w := map[string][]string{}
	for _, p := range consolePages {
		w[routeKey(p.route)] = p.ready
	}
	return w
}

// browse loads every page consoleLoads times in headless Chromium, the pages in turn
// after one unrecorded round, each load a new document in one tab signed in with
// token, timed in the page from the navigation's start until its data is rendered.
func (b *bench) browse(ctx context.Context, base, token string, rng *rand.Rand, customers int, phones []string) (*table, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	quiet := func(format string, args ...any) { b.log.Debug("chromium", "message", fmt.Sprintf(format, args...)) }
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(quiet), chromedp.WithErrorf(quiet))
	defer bcancel()
	if err := chromedp.Do(bctx); err != nil { // start the browser outside any step's deadline
		return nil, fmt.Errorf("start chromium %s: %w", chromiumPath, err)
	}
	version, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
	if err != nil {
		return nil, fmt.Errorf("chromium version: %w", err)
	}
	wants, err := json.Marshal(pageWants())
	if err != nil {
		return nil, err
	}
	if _, err := chromedp.Call(bctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(markScript, wants)}); err != nil {
		return nil, fmt.Errorf("chromium: page script: %w", err)
	}
	tok, err := json.Marshal(token)
	if err != nil {
		return nil, err
	}
	within := func(fn func(ctx context.Context) error) error {
		c, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		return fn(c)
	}
	// Signed in as the sign-in form does: the token in the tab's sessionStorage.
	if err := within(func(c context.Context) error {
		return chromedp.Do(c, chromedp.Navigate(base+"/console/"),
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`sessionStorage.setItem('touchstream.token', %s)`, tok)))
	}); err != nil {
		return nil, fmt.Errorf("chromium: sign in: %w", err)
	}
	// read waits for the page script's record (its times are the page's own: how soon
	// it is read does not matter).
	read := func(c context.Context) (*mark, error) {
		for {
			m, err := chromedp.Run(c, chromedp.Evaluate[*mark](markRead))
			if err != nil || m != nil {
				return m, err
			}
			select {
			case <-c.Done():
				return nil, c.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	loads := 0
	loadOnce := func(p consolePage) (time.Duration, time.Duration, error) {
		r := p.replacer(customerID(rng.IntN(customers)), phones[rng.IntN(len(phones))])
		// A new document each time, from the console's own origin, as a reload or a
		// link does: the query string only makes the address differ.
		loads++
		addr := fmt.Sprintf("%s/console/?load=%d%s", base, loads, r.Replace(p.route))
		var m *mark
		err := within(func(c context.Context) error {
			if err := chromedp.Do(c, chromedp.Navigate(addr)); err != nil {
				return err
			}
			var err error
			if m, err = read(c); err != nil || m.Failed != "" || p.found == nil {
				return err
			}
			found, _ := json.Marshal(p.found)
			phone, _ := json.Marshal(phones[rng.IntN(len(phones))])
			if err := chromedp.Do(c, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(searchSubmit, found, phone))); err != nil {
				return err
			}
			m, err = read(c)
			return err
		})
		switch {
		case err != nil:
			return 0, 0, err
		case m.Failed != "":
			return 0, 0, fmt.Errorf("the page shows %q", m.Failed)
		}
		return time.Duration((m.Done - m.T0) * float64(time.Millisecond)), time.Duration(m.Shell * float64(time.Millisecond)), nil
	}
	lat := make([]latencies, len(consolePages))
	shell := make([]latencies, len(consolePages))
	b.log.Info("console pages in chromium", "pages", len(consolePages), "loads_each", consoleLoads, "version", version.Product)
	c0 := sampleCPU()
	for round := -1; round < consoleLoads; round++ {
		for k, p := range consolePages {
			d, s, err := loadOnce(p)
			if bctx.Err() != nil {
				return nil, fmt.Errorf("chromium: %w", context.Cause(bctx))
			}
			if round < 0 {
				if err != nil {
					return nil, fmt.Errorf("chromium: page %s: %w", p.name, err)
				}
				continue
			}
			if err != nil {
				b.log.Warn("console page failed in chromium", "page", p.name, "err", err)
				lat[k].fail()
				continue
			}
			lat[k].add(d)
			shell[k].add(s)
		}
	}
	cpu := c0.until(sampleCPU())

	t := newTable("console: the same pages loaded in headless Chromium until their data is rendered",
		"page", "loads", "p50 ms", "p90 ms", "max ms", "page and scripts p50 ms", "errors", "target")
	t.note("browser: %s (%s), flags --headless --no-sandbox --disable-gpu, one tab, one page at a time, nothing else measured meanwhile; signed in with the same token (sessionStorage, as the sign-in form keeps it)",
		version.Product, chromiumPath)
	t.note("each load: a new document, navigating from the previous page to /console/?load=<n>#<route> as a reload or a link does (index.html, styles.css, app.js, charts.js fetched again: served with Cache-Control no-cache), GET /v1/session, the page's requests, its live stream opened; a random customer each time; the pages in turn, %d rounds after one unrecorded round",
		consoleLoads)
	t.note("time, measured in the page (performance.now(), from the navigation's start): until the DOM shows the page's data (the ready markers of app.js: each panel's data-loaded, the alerts table or its empty line, the search results); the search from its submit instead, on the open page")
	t.note("page and scripts: DOMContentLoaded's end, the share of the time before the console's first request; cpu during the loads, self/machine: %s", cpu.String())
	for k, p := range consolePages {
		s, sh := lat[k].summarize(), shell[k].summarize()
		shellP50 := millis(sh.p50)
		if p.found != nil {
			shellP50 = "-"
		}
		t.row(p.name, count(s.n), millis(s.p50), millis(s.p90), millis(s.pMax), shellP50, count(s.errors),
			verdict(s.n > 0 && s.errors == 0 && s.pMax < consoleTarget, "all < 300 ms"))
	}
	return t, nil
}
