package redeem_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/services/internal/redeem"
	"github.com/touchstream/touchstream/testkit"
)

func redeemBody(key string, points int64) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"points":%d,"partner":"AIRCHINA","item":"里程 500"}`, key, points)
}

func redemptionsPath(customer string) string {
	return "/v1/loyalty/members/" + customer + "/redemptions"
}

// One hundred concurrent redemptions of 100 points against a member holding 1000:
// exactly ten are accepted, the ninety others are told the available balance (0), the
// log holds exactly ten points.redeemed and the reservations add up to the balance.
func TestConcurrentRedemptionsNeverOverspend(t *testing.T) {
	f := newFixture(t)
	const member = "C-CONC"
	f.setBalance(t, member, 1000)

	var wg sync.WaitGroup
	answers := make([]response, 100)
	for i := range answers {
		wg.Go(func() {
			answers[i] = f.post(t, redemptionsPath(member), redeemBody(fmt.Sprintf("k-%03d", i), 100), nil)
		})
	}
	wg.Wait()

	created, refused := 0, 0
	ids := map[string]bool{}
	for i, r := range answers {
		switch r.status {
		case http.StatusCreated:
			created++
			red := decode[redeem.Redemption](t, r)
			if red.Status != "published" && red.Status != "settled" || red.StreamSeq == nil {
				t.Errorf("answer %d: status %q seq %v, want published with a sequence", i, red.Status, red.StreamSeq)
			}
			ids[red.ID] = true
		case http.StatusConflict:
			refused++
			e := decode[errorAnswer](t, r)
			if e.Error.Code != "insufficient_points" || e.Available == nil || *e.Available != 0 || e.Error.Parameter != "points" {
				t.Errorf("answer %d: %s", i, r.body)
			}
		default:
			t.Errorf("answer %d: %d %s", i, r.status, r.body)
		}
	}
	if created != 10 || refused != 90 || len(ids) != 10 {
		t.Errorf("created %d (%d ids), refused %d; want 10, 10, 90", created, len(ids), refused)
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 10 {
		t.Errorf("log holds %d points.redeemed, want 10", got)
	}
	var sum, rows int64
	if err := f.pool.QueryRow(t.Context(), `SELECT coalesce(sum(points), 0), count(*) FROM redeem.reservations WHERE customer_id = $1`, member).Scan(&sum, &rows); err != nil {
		t.Fatal(err)
	}
	if sum != 1000 || rows != 10 {
		t.Errorf("reservations: %d rows, %d points; want 10, 1000", rows, sum)
	}
}

// A repeated idempotency key answers the original redemption and publishes nothing;
// the key may come in the header; other values under the same key are refused.
func TestIdempotentRetry(t *testing.T) {
	f := newFixture(t)
	const member = "C-IDEM"
	f.setBalance(t, member, 500)

	first := f.post(t, redemptionsPath(member), redeemBody("order-1", 200), nil)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	orig := decode[redeem.Redemption](t, first)
	e := f.event(t, *orig.StreamSeq)
	var data events.PointsRedeemed
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatal(err)
	}
	if e.ID != orig.ID || e.Source != redeem.Source || e.Subject != member || e.Type != events.TypePointsRedeemed ||
		data != (events.PointsRedeemed{RedemptionID: orig.ID, Points: 200, Partner: "AIRCHINA", Item: "里程 500", ReservationID: orig.ID}) {
		t.Errorf("stored event %+v data %+v", e, data)
	}

	for _, tc := range []struct {
		name   string
		body   string
		header http.Header
	}{
		{"body key", redeemBody("order-1", 200), nil},
		{"header key", `{"points":200,"partner":"AIRCHINA","item":"里程 500"}`, http.Header{"Idempotency-Key": {"order-1"}}},
		{"both keys", redeemBody("order-1", 200), http.Header{"Idempotency-Key": {"order-1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.post(t, redemptionsPath(member), tc.body, tc.header)
			if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: %d %v %s", r.status, r.header, r.body)
			}
			if got := decode[redeem.Redemption](t, r); got.ID != orig.ID || *got.StreamSeq != *orig.StreamSeq {
				t.Errorf("replay answered %s seq %d, want %s seq %d", got.ID, *got.StreamSeq, orig.ID, *orig.StreamSeq)
			}
		})
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 1 {
		t.Errorf("log holds %d points.redeemed, want 1", got)
	}

	conflict := f.post(t, redemptionsPath(member), redeemBody("order-1", 300), nil)
	if e := decode[errorAnswer](t, conflict); conflict.status != http.StatusConflict || e.Error.Code != "idempotency_conflict" || e.Error.Parameter != "idempotency_key" {
		t.Errorf("other values under the key: %d %s", conflict.status, conflict.body)
	}
	// The same key for another member is another redemption.
	f.setBalance(t, "C-OTHER", 500)
	if r := f.post(t, redemptionsPath("C-OTHER"), redeemBody("order-1", 200), nil); r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("same key, other member: %d %s", r.status, r.body)
	}
	// 500 - 200 reserved: 300 is available, 301 is not.
	if r := f.post(t, redemptionsPath(member), redeemBody("order-2", 301), nil); r.status != http.StatusConflict || *decode[errorAnswer](t, r).Available != 300 {
		t.Errorf("over the rest: %d %s", r.status, r.body)
	}
	if r := f.post(t, redemptionsPath(member), redeemBody("order-3", 300), nil); r.status != http.StatusCreated {
		t.Errorf("the rest: %d %s", r.status, r.body)
	}
}

// A reversal publishes one event.retracted naming the redemption's event, from the
// same source; repeating it publishes nothing more.
func TestReversal(t *testing.T) {
	f := newFixture(t)
	const member = "C-REV"
	f.setBalance(t, member, 1000)
	r := f.post(t, redemptionsPath(member), redeemBody("rev-1", 400), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	red := decode[redeem.Redemption](t, r)
	path := "/v1/loyalty/redemptions/" + red.ID + "/reversal"

	first := f.post(t, path, `{"reason":"partner cancelled the order"}`, nil)
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("reverse: %d %s", first.status, first.body)
	}
	rev := decode[redeem.Redemption](t, first).Reversal
	if rev == nil || rev.Status != "published" || rev.StreamSeq == nil || rev.Reason != "partner cancelled the order" {
		t.Fatalf("reversal %+v", rev)
	}
	e := f.event(t, *rev.StreamSeq)
	var data events.EventRetracted
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatal(err)
	}
	if e.Type != events.TypeEventRetracted || e.Source != redeem.Source || e.Subject != member ||
		data.Target != (events.EventRef{Source: redeem.Source, ID: red.ID}) {
		t.Errorf("stored retraction %+v data %+v", e, data)
	}

	again := f.post(t, path, `{"reason":"another reason"}`, nil)
	if again.status != http.StatusCreated || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("reverse again: %d %s", again.status, again.body)
	}
	if got := decode[redeem.Redemption](t, again).Reversal; got.Reason != rev.Reason || *got.StreamSeq != *rev.StreamSeq {
		t.Errorf("second reversal answered %+v, want the first", got)
	}
	if got := f.count(t, events.TypeEventRetracted); got != 1 {
		t.Errorf("log holds %d event.retracted, want 1", got)
	}
	if got := decode[redeem.Redemption](t, f.get(t, "/v1/loyalty/redemptions/"+red.ID)); got.Reversal == nil || got.Reversal.Status != "published" {
		t.Errorf("GET after reversal: %+v", got)
	}
	if r := f.post(t, "/v1/loyalty/redemptions/rdm_00000000000000000000000000/reversal", `{"reason":"x"}`, nil); r.status != http.StatusNotFound {
		t.Errorf("reverse unknown: %d %s", r.status, r.body)
	}
}

// Bad input is refused with the status and the field at fault.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	const member = "C-BAD"
	f.setBalance(t, member, 1000)
	ok := `{"idempotency_key":"k","points":10,"partner":"P1","item":"x"}`
	for _, tc := range []struct {
		name, path, body, ct string
		header               http.Header
		status               int
		param                string
	}{
		{"negative points", redemptionsPath(member), `{"idempotency_key":"k","points":-5,"partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"zero points", redemptionsPath(member), `{"idempotency_key":"k","points":0,"partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"too many points", redemptionsPath(member), `{"idempotency_key":"k","points":100000001,"partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"fractional points", redemptionsPath(member), `{"idempotency_key":"k","points":1.5,"partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"points as text", redemptionsPath(member), `{"idempotency_key":"k","points":"10","partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"missing points", redemptionsPath(member), `{"idempotency_key":"k","partner":"P1","item":"x"}`, "", nil, 400, "points"},
		{"missing partner", redemptionsPath(member), `{"idempotency_key":"k","points":10,"item":"x"}`, "", nil, 400, "partner"},
		{"bad partner", redemptionsPath(member), `{"idempotency_key":"k","points":10,"partner":"P 1","item":"x"}`, "", nil, 400, "partner"},
		{"missing item", redemptionsPath(member), `{"idempotency_key":"k","points":10,"partner":"P1"}`, "", nil, 400, "item"},
		{"long item", redemptionsPath(member), `{"idempotency_key":"k","points":10,"partner":"P1","item":"` + strings.Repeat("物", 129) + `"}`, "", nil, 400, "item"},
		{"missing key", redemptionsPath(member), `{"points":10,"partner":"P1","item":"x"}`, "", nil, 400, "idempotency_key"},
		{"keys differ", redemptionsPath(member), ok, "", http.Header{"Idempotency-Key": {"other"}}, 400, "idempotency_key"},
		{"unknown field", redemptionsPath(member), `{"idempotency_key":"k","points":10,"partner":"P1","item":"x","discount":3}`, "", nil, 400, "discount"},
		{"not an object", redemptionsPath(member), `[1]`, "", nil, 400, "body"},
		{"not JSON", redemptionsPath(member), `{"points":`, "", nil, 400, "body"},
		{"two objects", redemptionsPath(member), ok + ok, "", nil, 400, "body"},
		{"bad customer id", redemptionsPath("C%20X"), ok, "", nil, 400, "customer_id"},
		{"long customer id", redemptionsPath(strings.Repeat("C", 65)), ok, "", nil, 400, "customer_id"},
		{"wrong content type", redemptionsPath(member), ok, "text/plain", nil, 415, "Content-Type"},
		{"no content type", redemptionsPath(member), ok, "-", nil, 415, "Content-Type"},
		{"huge body", redemptionsPath(member), `{"idempotency_key":"k","points":10,"partner":"P1","item":"` + strings.Repeat("x", 20000) + `"}`, "", nil, 413, "body"},
		{"bad redemption id", "/v1/loyalty/redemptions/nope/reversal", `{"reason":"x"}`, "", nil, 400, "id"},
		{"missing reason", "/v1/loyalty/redemptions/rdm_00000000000000000000000000/reversal", `{}`, "", nil, 400, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {"application/json"}}
			switch tc.ct {
			case "":
			case "-":
				h.Del("Content-Type")
			default:
				h.Set("Content-Type", tc.ct)
			}
			for k, vs := range tc.header {
				h[k] = vs
			}
			r := f.do(t, http.MethodPost, tc.path, tc.body, h)
			e := decode[errorAnswer](t, r)
			if r.status != tc.status || e.Error.Parameter != tc.param || !strings.Contains(e.Error.Message, tc.param) {
				t.Errorf("got %d %s; want %d naming %s", r.status, r.body, tc.status, tc.param)
			}
		})
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 0 {
		t.Errorf("log holds %d points.redeemed after bad input, want 0", got)
	}
	var rows int
	if err := f.pool.QueryRow(t.Context(), `SELECT count(*) FROM redeem.reservations`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("reservations after bad input: %d (%v)", rows, err)
	}
}

// Routes, methods and lookups answer as documented.
func TestRoutes(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "C-GET", 100)
	r := f.post(t, redemptionsPath("C-GET"), redeemBody("g", 100), http.Header{"X-Request-Id": {"req-42"}})
	if r.status != http.StatusCreated || r.header.Get("X-Request-Id") != "req-42" {
		t.Fatalf("redeem: %d %v", r.status, r.header)
	}
	red := decode[redeem.Redemption](t, r)
	got := decode[redeem.Redemption](t, f.get(t, "/v1/loyalty/redemptions/"+red.ID))
	if got.ID != red.ID || got.Points != 100 || got.CustomerID != "C-GET" || got.Reversal != nil {
		t.Errorf("GET: %+v", got)
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		allow              string
	}{
		{"unknown redemption", http.MethodGet, "/v1/loyalty/redemptions/rdm_00000000000000000000000000", 404, ""},
		{"malformed id", http.MethodGet, "/v1/loyalty/redemptions/123", 400, ""},
		{"unknown path", http.MethodGet, "/v1/nothing", 404, ""},
		{"GET on redemptions", http.MethodGet, redemptionsPath("C-GET"), 405, "POST"},
		{"DELETE a redemption", http.MethodDelete, "/v1/loyalty/redemptions/" + red.ID, 405, "GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.method, tc.path, "", nil)
			if r.status != tc.status || r.header.Get("Allow") != tc.allow {
				t.Errorf("got %d Allow %q %s; want %d Allow %q", r.status, r.header.Get("Allow"), r.body, tc.status, tc.allow)
			}
		})
	}
}

// A reservation left pending (a crash between commit and publish, or a lost
// acknowledgement) counts against the member, and is completed exactly once: by the
// client's retry when the event is already in the log (a duplicate), or by the sweeper
// when it is not.
func TestPendingIsCompletedExactlyOnce(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const member = "C-PEND"
	f.setBalance(t, member, 1000)

	// Stored, but its acknowledgement lost: the row still says pending.
	r := f.post(t, redemptionsPath(member), redeemBody("lost-ack", 300), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	red := decode[redeem.Redemption](t, r)
	if _, err := f.pool.Exec(ctx, `UPDATE redeem.reservations SET status = 'pending', stream_seq = NULL WHERE id = $1`, red.ID); err != nil {
		t.Fatal(err)
	}
	// Never published: inserted as the service does, then the process died.
	crashed := "rdm_0123456789abcdef0123456789"
	if _, err := f.pool.Exec(ctx, `INSERT INTO redeem.reservations (id, customer_id, idempotency_key, points, partner, item,
		created_at, event_source, event_id) VALUES ($1, $2, 'crashed', 600, 'JD', 'phone case', $3, $4, $1)`,
		crashed, member, f.now.Add(-time.Minute), redeem.Source); err != nil {
		t.Fatal(err)
	}
	// Both pending reservations count: 1000 - 300 - 600.
	if r := f.post(t, redemptionsPath(member), redeemBody("more", 101), nil); r.status != http.StatusConflict || *decode[errorAnswer](t, r).Available != 100 {
		t.Errorf("with pending reservations: %d %s", r.status, r.body)
	}
	// A redemption still pending cannot be reversed yet.
	if r := f.post(t, "/v1/loyalty/redemptions/"+crashed+"/reversal", `{"reason":"x"}`, nil); r.status != http.StatusConflict || r.header.Get("Retry-After") == "" {
		t.Errorf("reverse pending: %d %s", r.status, r.body)
	}

	retry := f.post(t, redemptionsPath(member), redeemBody("lost-ack", 300), nil)
	if got := decode[redeem.Redemption](t, retry); retry.status != http.StatusCreated || got.ID != red.ID || got.Status != "published" || *got.StreamSeq != *red.StreamSeq {
		t.Errorf("retry of the lost acknowledgement: %d %s", retry.status, retry.body)
	}
	if err := f.api.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.api.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 2 {
		t.Errorf("log holds %d points.redeemed, want 2 (one per reservation)", got)
	}
	got := decode[redeem.Redemption](t, f.get(t, "/v1/loyalty/redemptions/"+crashed))
	if got.Status != "published" || got.StreamSeq == nil {
		t.Fatalf("swept reservation: %+v", got)
	}
	if e := f.event(t, *got.StreamSeq); e.ID != crashed || !e.Time.Equal(f.now.Add(-time.Minute)) {
		t.Errorf("swept event id %s time %s", e.ID, e.Time)
	}
}

// loyalty.Settle (called by the loyalty projection in the transaction that folds the
// points.redeemed) marks reservations settled, so they stop counting; it is
// idempotent, ignores unknown ids and is a no-op without the table.
func TestSettle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const member = "C-SETTLE"
	f.setBalance(t, member, 500)
	red := decode[redeem.Redemption](t, f.post(t, redemptionsPath(member), redeemBody("s", 500), nil))
	if r := f.post(t, redemptionsPath(member), redeemBody("s2", 1), nil); r.status != http.StatusConflict {
		t.Fatalf("before settling: %d", r.status)
	}
	for range 2 {
		err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE public.test_balances SET points = 0 WHERE customer = $1`, member); err != nil {
				return err
			}
			return loyalty.Settle(ctx, tx, []string{red.ID, "rdm_ffffffffffffffffffffffffff", "imported-1"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := decode[redeem.Redemption](t, f.get(t, "/v1/loyalty/redemptions/"+red.ID)); got.Status != "settled" {
		t.Errorf("status %q, want settled", got.Status)
	}
	f.setBalance(t, member, 70)
	if r := f.post(t, redemptionsPath(member), redeemBody("s3", 70), nil); r.status != http.StatusCreated {
		t.Errorf("after settling, the new balance is available: %d %s", r.status, r.body)
	}

	// A database where the service never ran.
	pool, _ := testkit.Pool(t)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := loyalty.Settle(ctx, tx, []string{"rdm_x"}); err != nil {
			return err
		}
		var one int
		return tx.QueryRow(ctx, `SELECT 1`).Scan(&one) // the transaction is still usable
	})
	if err != nil {
		t.Errorf("settle without the table: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := redeem.New(redeem.Config{Addr: "nowhere", LoyaltyTarget: "Bad-Name", PublishAttempts: 11}, redeem.Deps{})
	if err == nil {
		t.Fatal("New accepted an invalid configuration")
	}
	for _, want := range []string{"Addr", "LoyaltyTarget", "PublishAttempts", "Deps.Pool", "Deps.Publisher", "Deps.Balance"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// When the log does not acknowledge (here: no stream bound to the subject, so every
// attempt ends in events.ErrAckUnknown), the answer is 503 with Retry-After, the
// reservation stays pending and keeps holding the points; the client's retry with the
// same key, once the log is back, publishes it exactly once.
func TestUnknownOutcomeIsRetriedWithTheSameEvent(t *testing.T) {
	f := newFixtureWith(t, redeem.Config{PublishAttempts: 2}, balanceFromTable)
	const member = "C-NOACK"
	f.setBalance(t, member, 100)
	if err := f.js.DeleteStream(t.Context(), f.layout.Streams[0].Name); err != nil {
		t.Fatal(err)
	}
	r := f.post(t, redemptionsPath(member), redeemBody("unacked", 100), nil)
	if e := decode[errorAnswer](t, r); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || e.Error.Code != "unavailable" {
		t.Fatalf("without a stream: %d %v %s", r.status, r.header, r.body)
	}
	var id, status string
	if err := f.pool.QueryRow(t.Context(), `SELECT id, status FROM redeem.reservations WHERE customer_id = $1`, member).Scan(&id, &status); err != nil || status != "pending" {
		t.Fatalf("reservation %s %q (%v), want pending", id, status, err)
	}
	if r := f.post(t, redemptionsPath(member), redeemBody("another", 1), nil); r.status != http.StatusConflict || *decode[errorAnswer](t, r).Available != 0 {
		t.Errorf("the pending reservation holds the points: %d %s", r.status, r.body)
	}

	def := streams.Default()
	def.Layout = f.layout
	if _, err := streams.Apply(t.Context(), f.js, def); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r = f.post(t, redemptionsPath(member), redeemBody("unacked", 100), nil)
		if got := decode[redeem.Redemption](t, r); r.status != http.StatusCreated || got.ID != id || got.Status != "published" {
			t.Fatalf("retry: %d %s", r.status, r.body)
		}
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 1 {
		t.Errorf("log holds %d points.redeemed, want 1", got)
	}
}

// Fifty concurrent requests with the same idempotency key make one redemption: one
// is created, the others answer it as a replay, and the log holds one event.
func TestConcurrentRetriesOfOneKey(t *testing.T) {
	f := newFixture(t)
	const member = "C-SAMEKEY"
	f.setBalance(t, member, 1000)
	var wg sync.WaitGroup
	answers := make([]response, 50)
	for i := range answers {
		wg.Go(func() { answers[i] = f.post(t, redemptionsPath(member), redeemBody("once", 100), nil) })
	}
	wg.Wait()
	created, replayed := 0, 0
	ids := map[string]bool{}
	for i, r := range answers {
		if r.status != http.StatusCreated {
			t.Errorf("answer %d: %d %s", i, r.status, r.body)
			continue
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		} else {
			created++
		}
		ids[decode[redeem.Redemption](t, r).ID] = true
	}
	if created != 1 || replayed != 49 || len(ids) != 1 {
		t.Errorf("created %d, replayed %d, %d ids; want 1, 49, 1", created, replayed, len(ids))
	}
	if got := f.count(t, events.TypePointsRedeemed); got != 1 {
		t.Errorf("log holds %d points.redeemed, want 1", got)
	}
}
