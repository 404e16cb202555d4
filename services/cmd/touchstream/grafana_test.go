package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/projections/reporting"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/notify"
	"github.com/touchstream/touchstream/testkit"
)

const grafanaDir = "../../../deploy/grafana"

// grafanaQuery is one query of one panel of a dashboard.
type grafanaQuery struct {
	board, panel, refID string
	dsType, dsUID       string
	rawSQL, format      string // PostgreSQL
	expr                string // Prometheus
}

func (q grafanaQuery) String() string {
	return fmt.Sprintf("dashboard %q panel %q query %s", q.board, q.panel, q.refID)
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	Title      string             `json:"title"`
	Type       string             `json:"type"`
	Datasource *grafanaDatasource `json:"datasource"`
	Targets    []struct {
		RefID      string             `json:"refId"`
		Datasource *grafanaDatasource `json:"datasource"`
		RawSQL     string             `json:"rawSql"`
		Format     string             `json:"format"`
		Expr       string             `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a row's panels
}

// grafanaQueries reads every query of every panel of every dashboard under deploy/grafana.
func grafanaQueries(t *testing.T) []grafanaQuery {
	t.Helper()
	var files []string
	err := filepath.WalkDir(grafanaDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".json") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboards under %s", grafanaDir)
	}
	var out []grafanaQuery
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var board struct {
			UID    string         `json:"uid"`
			Title  string         `json:"title"`
			Panels []grafanaPanel `json:"panels"`
		}
		if err := json.Unmarshal(b, &board); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if board.UID == "" || board.Title == "" || len(board.Panels) == 0 {
			t.Errorf("%s: a dashboard needs a uid, a title and panels", f)
		}
		var walk func([]grafanaPanel)
		walk = func(ps []grafanaPanel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("dashboard %q panel %q: no queries", board.Title, p.Title)
				}
				for _, tg := range p.Targets {
					ds := tg.Datasource
					if ds == nil {
						ds = p.Datasource
					}
					if ds == nil {
						t.Errorf("dashboard %q panel %q query %s: no datasource", board.Title, p.Title, tg.RefID)
						continue
					}
					out = append(out, grafanaQuery{board: board.Title, panel: p.Title, refID: tg.RefID, dsType: ds.Type, dsUID: ds.UID,
						rawSQL: tg.RawSQL, format: tg.Format, expr: tg.Expr})
				}
			}
		}
		walk(board.Panels)
	}
	return out
}

// TestGrafanaDatasources: every query names a datasource the provisioning defines,
// and says something in its language.
func TestGrafanaDatasources(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning", "datasources", "touchstream.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range grafanaQueries(t) {
		if !strings.Contains(string(b), "uid: "+q.dsUID+"\n") {
			t.Errorf("%s: datasource uid %q is not provisioned", q, q.dsUID)
		}
		switch {
		case strings.Contains(q.dsType, "postgres"):
			if strings.TrimSpace(q.rawSQL) == "" {
				t.Errorf("%s: PostgreSQL query without rawSql", q)
			}
		case q.dsType == "prometheus":
			if strings.TrimSpace(q.expr) == "" {
				t.Errorf("%s: Prometheus query without expr", q)
			}
		default:
			t.Errorf("%s: datasource type %q: want PostgreSQL or Prometheus", q, q.dsType)
		}
	}
}

var (
	macroTimeFilter  = regexp.MustCompile(`\$__timeFilter\(\s*([^)]+?)\s*\)`)
	macroTimeGroup   = regexp.MustCompile(`\$__timeGroup(Alias)?\(\s*([^,)]+?)\s*,\s*'?([0-9]+)([smhdw])'?\s*(?:,[^)]*)?\)`)
	macroEpochFilter = regexp.MustCompile(`\$__unixEpochFilter\(\s*([^)]+?)\s*\)`)
)

// expandMacros does what Grafana's PostgreSQL datasource does to a query for the
// range [from, to]; the macros it does not know are left, and make the query fail.
func expandMacros(sql string, from, to time.Time) string {
	lit := func(t time.Time) string { return "'" + t.UTC().Format(time.RFC3339) + "'" }
	sql = macroTimeFilter.ReplaceAllString(sql, "$1 BETWEEN "+lit(from)+" AND "+lit(to))
	sql = macroEpochFilter.ReplaceAllString(sql, fmt.Sprintf("$1 >= %d AND $1 <= %d", from.Unix(), to.Unix()))
	sql = macroTimeGroup.ReplaceAllStringFunc(sql, func(m string) string {
		g := macroTimeGroup.FindStringSubmatch(m)
		n, _ := strconv.Atoi(g[3])
		secs := n * map[string]int{"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[g[4]]
		s := fmt.Sprintf("floor(extract(epoch from %s)/%d)*%d", g[2], secs, secs)
		if g[1] != "" {
			s += ` AS "time"`
		}
		return s
	})
	sql = strings.ReplaceAll(sql, "$__timeFrom()", lit(from))
	sql = strings.ReplaceAll(sql, "$__timeTo()", lit(to))
	return sql
}

// TestGrafanaPanelsSQL runs every PostgreSQL panel's query, as the read-only
// reporting role, against the reporting views over read models folded from a
// simulated history.
func TestGrafanaPanelsSQL(t *testing.T) {
	c := newCLIEnv(t)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
	ctx := t.Context()
	tc := &toolConn{pool: c.pool, nc: c.nc, js: c.js, def: c.def, cat: c.cat, log: testkit.Logger(t)}
	if _, err := ensureClubOpen(ctx, tc, c.loyalty); err != nil {
		t.Fatal(err)
	}
	simulateHistory(t, c, 150, 45, start)
	if _, err := projections.EnsureServing(ctx, c.pool, defaultServing()); err != nil {
		t.Fatal(err)
	}
	d := c.projectorDeps(t)
	d.keys = nil // no key service here: no phone index, the rest folds
	r, err := buildProjector(projectorFlags{instance: "grafana-test"}, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := reporting.Refresh(ctx, c.pool); err != nil {
		t.Fatal(err)
	}
	role := "grafana_test_" + testkit.Unique()
	t.Cleanup(func() {
		for _, s := range []string{`DROP OWNED BY ` + pgx.Identifier{role}.Sanitize(), `DROP ROLE IF EXISTS ` + pgx.Identifier{role}.Sanitize()} {
			if _, err := c.pool.Exec(context.Background(), s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
	if err := reporting.EnsureRole(ctx, c.pool, role); err != nil {
		t.Fatal(err)
	}
	views, err := reporting.Views()
	if err != nil {
		t.Fatal(err)
	}
	var counts []string
	for _, v := range views {
		var n int64
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM `+v.Name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, fmt.Sprintf("%s=%d", v.Name, n))
		if n == 0 && !slices.Contains([]string{"reporting.dead_letters", "reporting.projection_lag"}, v.Name) {
			t.Errorf("the folded history left %s empty: its panels would run on nothing", v.Name)
		}
	}
	t.Logf("rows: %s", strings.Join(counts, " "))

	from, to := start, start.AddDate(0, 0, 45)
	n := 0
	for _, q := range grafanaQueries(t) {
		if !strings.Contains(q.dsType, "postgres") {
			continue
		}
		n++
		sql := expandMacros(q.rawSQL, from, to)
		if strings.Contains(sql, "$") {
			t.Errorf("%s: a macro or variable this test does not expand: %s", q, sql)
			continue
		}
		if err := runAs(ctx, c.pool, role, sql, q.format); err != nil {
			t.Errorf("%s: %v\n%s", q, err, sql)
		}
	}
	if n == 0 {
		t.Error("no PostgreSQL panels")
	}
	t.Logf("%d PostgreSQL queries ran", n)
}

// runAs runs a panel's query as role in a transaction rolled back, and checks the
// columns its format needs.
func runAs(ctx context.Context, pool *pgxpool.Pool, role, sql, format string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
		return err
	}
	rs, err := tx.Query(ctx, sql)
	if err != nil {
		return err
	}
	var cols []string
	for _, f := range rs.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	for rs.Next() {
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return err
	}
	if format == "time_series" && !slices.Contains(cols, "time") {
		return fmt.Errorf("format time_series needs a column named time; columns %v", cols)
	}
	return nil
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promNumber    = regexp.MustCompile(`^[0-9]`)
	promKeywords  = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"}
	histogramPart = []string{"_bucket", "_sum", "_count"}
)

// promMetrics are the metric names a PromQL expression reads.
func promMetrics(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || slices.Contains(promKeywords, strings.ToLower(name)) ||
			(loc[0] > 0 && promNumber.MatchString(s[loc[0]-1:loc[0]])) {
			continue // a function or aggregation, a keyword, a number's exponent or unit
		}
		out = append(out, name)
	}
	return out
}

func TestPromMetrics(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`sum by (outcome) (rate(touchstream_gateway_events_total{outcome="stored", x=~"a b"}[$__rate_interval]))`, "touchstream_gateway_events_total"},
		{`histogram_quantile(0.99, sum by (le, door) (rate(a_bucket[5m]))) / on (door) group_left b`, "a_bucket b"},
		{`max without (partition) (x) > bool 1e3 and y offset 5m`, "x y"},
	} {
		if got := strings.Join(promMetrics(tc.expr), " "); got != tc.want {
			t.Errorf("promMetrics(%s) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// registered reports whether reg holds a metric named name: registering a probe under
// the name fails when a collector with other help text already has it.
func registered(reg *prometheus.Registry, name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe: is this name registered?"})
	err := reg.Register(probe)
	if err == nil {
		reg.Unregister(probe)
		return false
	}
	return strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name")
}

// TestGrafanaPanelsMetrics: every metric a Prometheus panel reads is exported by the
// components as `touchstream run` wires them (gateway, projector, outbox forwarder,
// notifier, verifier) into one registry built by newRegistry, the registry their
// admin listener serves on /metrics.
func TestGrafanaPanelsMetrics(t *testing.T) {
	c := newCLIEnv(t)
	ctx := t.Context()
	log := testkit.Logger(t)
	reg := newRegistry()

	channels, err := gateway.LoadChannels(filepath.Join(c.deployDir, "channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(gateway.Config{Channels: channels}, gateway.Deps{NATS: c.nc, Layout: c.def.Layout, Catalog: c.cat,
		Keys: events.NewKeyClient(c.nc, events.KeyClientConfig{}), Dedup: c.pool, Registry: reg, Log: log}); err != nil {
		t.Fatal(err)
	}
	d := c.projectorDeps(t)
	d.registry, d.outbox = reg, true
	if _, err := buildProjector(projectorFlags{instance: "grafana-test"}, d, nil); err != nil {
		t.Fatal(err)
	}
	// The forwarder registers its metrics when it starts: start it stopped.
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := (outbox.Forwarder{Pool: c.pool, JS: c.js, Stream: c.def.SignalsConfig().Name, Registry: reg, Log: log}).Run(stopped); err != nil {
		t.Fatal(err)
	}
	env := config.MapEnv(map[string]string{
		"TOUCHSTREAM_WEBHOOK_RETENTION_DESK_SECRET": "0123456789abcdef0123456789abcdef",
		"TOUCHSTREAM_WEBHOOK_SLA_MONITOR_SECRET":    "0123456789abcdef0123456789abcdef",
	})
	cfg, err := notifyConfig(&config.Common{DeployDir: c.deployDir}, notifyFlags{webhooks: filepath.Join(c.deployDir, "webhooks.json"),
		initial: notify.DefaultInitialInterval, multiplier: notify.DefaultMultiplier, maxInterval: notify.DefaultMaxInterval, maxRetries: notify.DefaultMaxRetries}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notify.New(cfg, notify.Deps{Pool: c.pool, NATS: c.nc, Registry: reg, Log: log}); err != nil {
		t.Fatal(err)
	}
	if _, err := verify.New(verify.Deps{Pool: c.pool, JS: c.js, Layout: c.def.Layout, Registry: reg, Log: log},
		verify.Options{Target: customer360Target}); err != nil {
		t.Fatal(err)
	}

	n := 0
	for _, q := range grafanaQueries(t) {
		if q.dsType != "prometheus" {
			continue
		}
		names := promMetrics(q.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %s", q, q.expr)
		}
		for _, name := range names {
			n++
			ok := registered(reg, name)
			for _, suffix := range histogramPart {
				if base, cut := strings.CutSuffix(name, suffix); cut && !ok {
					ok = registered(reg, base)
				}
			}
			if !ok {
				t.Errorf("%s: metric %s is not exported (expr %s)", q, name, q.expr)
			}
		}
	}
	if n == 0 {
		t.Error("no Prometheus panels")
	}
	if registered(reg, "touchstream_no_such_metric") {
		t.Error("the probe finds a metric nobody registered")
	}
	t.Logf("%d metric references checked", n)
}
