package timeline_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/testkit"
)

// TestPurgeDropsSealedValues: a timeline row holding a sealed value (written by an
// older fold, or by hand) loses it; other rows and other customers are untouched.
func TestPurgeDropsSealedValues(t *testing.T) {
	ctx := t.Context()
	pool, _ := testkit.Pool(t)
	p := timeline.New("timeline_v1")
	if err := p.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	sealed := `{"alg":"A256GCM","kid":"k1","n":"AAAAAAAAAAAAAAAA","ct":"c2VjcmV0c2VjcmV0c2VjcmV0"}`
	for i, r := range []struct{ customer, data string }{
		{"C1", `{"name":` + sealed + `,"region":"CN-SH","contacts":[` + sealed + `,"x"]}`},
		{"C1", `{"recharge_id":"R1"}`},
		{"C2", `{"name":` + sealed + `}`},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO timeline_v1.events (customer_id, event_time, seq, stream, partition, stored_at, type, source, event_id, data)
			VALUES ($1, now(), $2, 'TOUCHPOINTS', 0, now(), 'customer.registered', 'urn:test', $3, $4)`, r.customer, i+1, strings.Repeat("e", i+1), []byte(r.data)); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) { n, err = p.Purge(ctx, tx, "C1"); return err }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("rows rewritten: %d, want 1", n)
	}
	rows, _ := pool.Query(ctx, `SELECT customer_id, convert_from(data, 'UTF8') FROM timeline_v1.events ORDER BY seq`)
	for rows.Next() {
		var c, data string
		if err := rows.Scan(&c, &data); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(data, "A256GCM"); got != (c == "C2") {
			t.Errorf("%s row %s: sealed value present %v", c, data, got)
		}
		if c == "C1" && strings.Contains(data, "region") && !strings.Contains(data, `"CN-SH"`) {
			t.Errorf("C1 row lost a field that is not sealed: %s", data)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
