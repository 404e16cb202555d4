package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/testkit"
)

// withEnv is c.env with some variables replaced.
func (c *cliEnv) withEnv(over map[string]string) config.Env {
	base := c.env
	return func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return base(k)
	}
}

// startKeys runs `touchstream keys` (which re-applies the log's erasures first) until
// the test ends, and waits until it answers.
func (c *cliEnv) startKeys(t *testing.T) {
	t.Helper()
	env := c.withEnv(map[string]string{"TOUCHSTREAM_ADMIN_ADDR": "127.0.0.1:0"})
	testkit.Go(t, "keys", 20*time.Second, func(ctx context.Context) error {
		return dispatch(ctx, []string{"keys", "--create-master-key"}, env, io.Discard)
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := c.nc.Request(events.KeySubjectIDs, []byte(`{}`), time.Second); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("key service not answering: %v", err)
		}
	}
}

// sealing publishes as source through the key service, with no late-arrival limit
// (history).
func (c *cliEnv) sealing(t *testing.T, source string) *events.Publisher {
	t.Helper()
	pub, err := events.NewPublisher(t.Context(), c.nc, events.WithSource(source), events.WithLayout(c.def.Layout),
		events.WithKeys(events.NewKeyClient(c.nc, events.KeyClientConfig{})), events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func publishAll(t *testing.T, pub *events.Publisher, evs ...*events.Event) {
	t.Helper()
	for i, r := range pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d (%s): %v", i, evs[i].Type, r.Err)
		}
	}
}

func event(t *testing.T, customer string, at time.Time, p events.Payload) *events.Event {
	t.Helper()
	e, err := events.NewEvent(customer, at, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// person is a customer's known personal values, as a test looks for them.
type person struct {
	id, name, phone, idNumber, address, complaint, comment, imei string
}

func newPerson(id string, n int) person {
	return person{id: id, name: fmt.Sprintf("测试客户%d号", n), phone: fmt.Sprintf("+86138%08d", 10000000+n*7919),
		idNumber: fmt.Sprintf("44030119%02d0101%04d", 70+n, 1000+n), address: fmt.Sprintf("深圳市南山区科技园%d栋", n),
		complaint: fmt.Sprintf("家里信号很差第%d次投诉", n), comment: fmt.Sprintf("客服态度不好编号%d", n), imei: fmt.Sprintf("8614%011d", 35000000000+int64(n))}
}

// needles are the values to look for: each in clear, and the phone as digits too.
func (p person) needles() []string {
	return []string{p.name, p.phone, strings.TrimPrefix(p.phone, "+86"), p.idNumber, p.address, p.complaint, p.comment, p.imei}
}

func (p person) registration(enterprise bool) events.CustomerRegistered {
	kind := "individual"
	if enterprise {
		kind = "enterprise"
	}
	return events.CustomerRegistered{Name: events.Clear(p.name), Phone: events.Clear(p.phone), IDType: "resident_id",
		IDNumber: events.Clear(p.idNumber), Address: events.Clear(p.address), CustomerType: kind, Region: "CN-GD-SZ",
		Plan: events.Plan{ID: "PRE-59", Name: "59元畅享卡", Kind: "prepaid", MonthlyFee: events.CNY(5900)}}
}

// touches are events carrying the person's other personal fields.
func (p person) touches(t *testing.T, at time.Time) []*events.Event {
	return []*events.Event{
		event(t, p.id, at, p.registration(false)),
		event(t, p.id, at.Add(time.Hour), events.SurveyAnswered{SurveyID: p.id + "-S1", Kind: "csat", Score: 2, Comment: events.Clear(p.comment)}),
		event(t, p.id, at.Add(2*time.Hour), events.DeviceChanged{IMEI: events.Clear(p.imei), Brand: "Huawei", Model: "Mate 60", PurchasedAt: "2026-01-05"}),
	}
}

// scanDatabase returns where, in the rows of every table of every schema, one of the
// needles occurs (as text, or hex-encoded inside bytea columns), skipping the places
// allowed to hold a needle.
func scanDatabase(t *testing.T, c *cliEnv, needles []string, allowed map[string][]string) []string {
	t.Helper()
	ctx := t.Context()
	rows, err := c.pool.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type table struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var tb table
		return tb, r.Scan(&tb.schema, &tb.name)
	})
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, tb := range tables {
		name := tb.schema + "." + tb.name
		rows, err := c.pool.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{tb.schema, tb.name}.Sanitize()+` t`)
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if slices.Contains(allowed[n], name) {
				continue
			}
			asHex := hex.EncodeToString([]byte(n))
			for _, row := range texts {
				if strings.Contains(row, n) || strings.Contains(row, asHex) {
					found = append(found, fmt.Sprintf("%s holds %q", name, n))
					break
				}
			}
		}
	}
	return found
}

// TestReplayAfterErasureLeavesNoPersonalData: `touchstream erase` records the erasure,
// deletes the key and purges; then blue/green rebuilds of customer 360 and the
// timeline replay the whole log; afterwards no row of any table of any schema holds
// the customer's name, phone, id number, address, free texts, phone search hash or a
// value sealed under the erased key, while another customer's data is intact.
func TestReplayAfterErasureLeavesNoPersonalData(t *testing.T) {
	c := newCLIEnv(t)
	c.startKeys(t)
	pub := c.sealing(t, "urn:touchstream:channel:store")
	gone, stay := newPerson("C-ERASED", 1), newPerson("C-STAYS", 2)
	at := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	evs := append(gone.touches(t, at), stay.touches(t, at)...)
	evs = append(evs,
		event(t, gone.id, at.Add(3*time.Hour), events.ComplaintOpened{ComplaintID: "CP-1", Category: "network", Severity: "high",
			PromisedBy: at.Add(4 * time.Hour), Description: events.Clear(gone.complaint)}),
		event(t, gone.id, at.Add(4*time.Hour), events.RechargeCompleted{RechargeID: "R-1", Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"}),
	)
	publishAll(t, pub, evs...)
	c.foldAll(t)

	before, err := customer360.Get(t.Context(), c.pool, customer360Target, gone.id)
	if err != nil || before.PhoneHash == nil {
		t.Fatalf("before the erasure: %+v, %v", before, err)
	}
	hash := hex.EncodeToString(customer360.PhoneHash(c.phoneKey, gone.phone))
	keyID := before.Phone.KeyID
	if found := scanDatabase(t, c, []string{hash}, nil); len(found) == 0 {
		t.Fatalf("the phone hash is nowhere before the erasure: the scan proves nothing")
	}

	out, err := c.run(t, "erase", gone.id, "--reason", "customer_request", "--operator", "dpo-01")
	t.Logf("erase:\n%s", out)
	if err != nil || !strings.Contains(out, "customer C-ERASED erased") || !strings.Contains(out, keyID) || !strings.Contains(out, "complete after") {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	c.foldAll(t) // the live projector folds the erasure
	for _, p := range []string{"customer360", "timeline"} {
		if out, err := c.run(t, "rebuild", p, "--quiet"); err != nil || !strings.Contains(out, p+"_v2") {
			t.Fatalf("rebuild %s: %v\n%s", p, err, out)
		}
	}
	rebuilt, err := customer360.Get(t.Context(), c.pool, "customer360_v2", gone.id)
	if err != nil || rebuilt.EventsTotal != before.EventsTotal+1 {
		t.Fatalf("rebuilt profile: %+v, %v; want the customer's events and the erasure counted", rebuilt, err)
	}

	needles := append(gone.needles(), hash, keyID)
	allowed := map[string][]string{keyID: {"keystore.erased_keys", "erasure.requests"}}
	for _, f := range scanDatabase(t, c, needles, allowed) {
		t.Errorf("after the erasure and the rebuilds: %s", f)
	}
	if found := scanDatabase(t, c, []string{hex.EncodeToString(customer360.PhoneHash(c.phoneKey, stay.phone))}, nil); len(found) == 0 {
		t.Errorf("the other customer's phone hash is gone too")
	}

	out, err = c.run(t, "erase", gone.id, "--reason", "customer_request", "--operator", "dpo-01")
	if err != nil || !strings.Contains(out, "was already erased") {
		t.Errorf("erase again: %v\n%s", err, out)
	}
	if _, err := c.run(t, "erase", gone.id, "--reason", "客户要求", "--operator", "dpo-01"); err == nil || !strings.Contains(err.Error(), "reason:") {
		t.Errorf("erase with a free-text reason: %v", err)
	}
}

// TestSignalsCarryNoPersonalData: customers with known personal values trigger every
// kind of signal (a loyalty tier change and an overdraft, a churn alert, a
// service-level breach); every message of SIGNALS and every webhook body is free of
// those values.
func TestSignalsCarryNoPersonalData(t *testing.T) {
	c := newCLIEnv(t)
	c.startKeys(t)
	cst := time.FixedZone("CST", 8*3600)
	people := map[string]person{}
	for i, id := range []string{"C-TIER", "C-OVER", "C-CHURN", "C-SLA"} {
		people[id] = newPerson(id, 10+i)
	}
	clubAt := time.Date(2026, 1, 1, 0, 0, 0, 0, cst)
	acts, err := events.NewPartitionEvents(c.def.Layout.Partitions, clubAt, events.LoyaltyRulesActivated{Version: "2026-01", EffectiveAt: clubAt})
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, c.sealing(t, "urn:touchstream:service:loyalty-admin"), acts...)

	store, recharge := c.sealing(t, "urn:touchstream:channel:store"), c.sealing(t, "urn:touchstream:channel:recharge")
	callc, numbering := c.sealing(t, "urn:touchstream:channel:callcenter"), c.sealing(t, "urn:touchstream:channel:numbering")
	t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, cst)
	for _, p := range people {
		publishAll(t, store, p.touches(t, t0)...)
	}
	// A tier change: 2,000 CNY in one recharge.
	publishAll(t, recharge, event(t, "C-TIER", t0.Add(24*time.Hour), events.RechargeCompleted{RechargeID: "R-BIG",
		Amount: events.CNY(2000_00), Credited: events.CNY(2000_00), Method: "cash"}))
	// An overdraft: a redemption with no points to spend.
	publishAll(t, c.sealing(t, "urn:touchstream:service:redemption"), event(t, "C-OVER", t0.Add(24*time.Hour),
		events.PointsRedeemed{RedemptionID: "IMP-1", Points: 300, Partner: "legacy", Item: "imported"}))
	// A churn alert: steady recharges, a retention call, a port-out request.
	var drift []*events.Event
	for d := 0; d < 90; d += 7 {
		drift = append(drift, event(t, "C-CHURN", t0.AddDate(0, 0, d+1), events.RechargeCompleted{RechargeID: fmt.Sprintf("R-%d", d),
			Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"}))
	}
	publishAll(t, recharge, drift...)
	publishAll(t, callc, event(t, "C-CHURN", t0.AddDate(0, 0, 100), events.CallCompleted{CallID: "CALL-1", Direction: "inbound",
		Queue: "retention", WaitSeconds: 12, HandlingSeconds: 300, Answered: true, Outcome: "resolved"}))
	publishAll(t, numbering, event(t, "C-CHURN", t0.AddDate(0, 0, 102), events.PortOutRequested{RequestID: "PO-1", TargetOperator: "unicom", Reason: "price"}))
	// A service-level breach: a complaint, with the customer's words, past its deadline.
	publishAll(t, store, event(t, "C-SLA", t0.Add(time.Hour), events.ComplaintOpened{ComplaintID: "CP-SLA", Category: "network",
		Severity: "high", PromisedBy: t0.Add(2 * time.Hour), Description: events.Clear(people["C-SLA"].complaint)}))
	ticks, err := events.NewPartitionEvents(c.def.Layout.Partitions, t0.AddDate(0, 0, 110), events.ClockTicked{Period: "day", Tick: t0.AddDate(0, 0, 110)})
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, c.sealing(t, "urn:touchstream:service:clock"), ticks...)

	// The webhook, fed by the notifier from SIGNALS, fed by the forwarder from the
	// outbox the live projector writes.
	var mu sync.Mutex
	bodies := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[r.Header.Get("Idempotency-Key")] = string(b)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	hooks := filepath.Join(t.TempDir(), "webhooks.json")
	if err := os.WriteFile(hooks, []byte(fmt.Sprintf(`{"webhooks": [{"name": "desk", "url": %q, "secret_env": "DESK_SECRET", "start": "all"}]}`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	notifyEnv := c.withEnv(map[string]string{"DESK_SECRET": "0123456789abcdef0123456789abcdef", "TOUCHSTREAM_WEBHOOKS_FILE": hooks,
		"TOUCHSTREAM_ADMIN_ADDR": "127.0.0.1:0"})
	testkit.Go(t, "notify", 20*time.Second, func(ctx context.Context) error {
		return dispatch(ctx, []string{"notify", "run"}, notifyEnv, io.Discard)
	})
	fwd := outbox.Forwarder{Pool: c.pool, JS: c.js, Stream: c.def.SignalsConfig().Name, Log: testkit.Logger(t)}
	testkit.Go(t, "forwarder", 20*time.Second, fwd.Run)
	d := c.projectorDeps(t)
	d.outbox = true
	r, err := buildProjector(projectorFlags{instance: "test"}, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}

	var want int
	if err := c.pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox.signals`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	signals, err := c.js.Stream(t.Context(), c.def.SignalsConfig().Name)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := signals.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		delivered := len(bodies)
		mu.Unlock()
		if int(info.State.Msgs) >= want && delivered >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d signals in the outbox, %d in SIGNALS, %d delivered", want, info.State.Msgs, delivered)
		}
	}
	info, _ := signals.Info(t.Context())
	var messages []string
	kinds := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := signals.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		messages = append(messages, string(m.Data))
		kinds[strings.TrimPrefix(m.Subject, "signals.")] = true
	}
	for _, k := range []string{"loyalty.tier_changed", "loyalty.overdraft", "churn.alert_raised", "servicelevel.complaint_breached"} {
		if !kinds[k] {
			t.Errorf("no %s signal among %v: the test does not cover every kind", k, kinds)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range people {
		for _, n := range p.needles() {
			for i, m := range messages {
				if strings.Contains(m, n) {
					t.Errorf("SIGNALS message %d holds %s's %q: %s", i, p.id, n, m)
				}
			}
			for id, b := range bodies {
				if strings.Contains(b, n) {
					t.Errorf("webhook body of %s holds %s's %q", id, p.id, n)
				}
			}
		}
	}
	t.Logf("%d signals (%v), %d webhook deliveries scanned", len(messages), kinds, len(bodies))
}

// TestEraseUsage: command-line mistakes are usage errors naming what is wrong, before
// anything is connected to; --retention --dry-run lists and erases nothing.
func TestEraseUsage(t *testing.T) {
	c := newCLIEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"erase"}, "exactly one customer id"},
		{[]string{"erase", "C-1", "C-2", "--reason", "customer_request", "--operator", "dpo-01"}, "exactly one customer id"},
		{[]string{"erase", "C-1", "--operator", "dpo-01"}, "reason:"},
		{[]string{"erase", "C-1", "--reason", "customer_request"}, "operator:"},
		{[]string{"erase", "C 1", "--reason", "customer_request", "--operator", "dpo-01"}, "customer:"},
		{[]string{"erase", "C-1", "--dry-run", "--reason", "customer_request", "--operator", "dpo-01"}, "--dry-run goes with --retention"},
		{[]string{"erase", "--retention", "C-1"}, "takes no customer"},
	} {
		_, err := c.run(t, tt.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want a usage error containing %q", tt.args, err, tt.want)
		}
	}
	c.startKeys(t)
	out, err := c.run(t, "erase", "--retention", "--dry-run")
	if err != nil || !strings.Contains(out, "0 customers due (dry run: nothing erased)") {
		t.Errorf("erase --retention --dry-run: %v\n%s", err, out)
	}
}
