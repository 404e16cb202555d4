package notify_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/services/internal/notify"
	"github.com/touchstream/touchstream/testkit"
)

// TestPurgeCustomer: an erasure deletes the parked deliveries of the customer's
// signals for every webhook, and only those (a customer id that merely appears inside
// another customer's id or in a body that is not JSON does not count).
func TestPurgeCustomer(t *testing.T) {
	ctx := t.Context()
	pool, _ := testkit.Pool(t)
	if err := notify.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][3]string{
		{"desk", "s1", `{"id":"s1","type":"churn.alert_raised","customer":"C-7"}`},
		{"sla", "s1", `{"id":"s1","type":"churn.alert_raised","customer":"C-7"}`},
		{"desk", "s2", `{"id":"s2","type":"churn.alert_raised","customer":"C-77"}`},
		{"desk", "s3", `not json C-7`},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO notify.parked (webhook, signal_id, signal_type, body, last_error, attempts)
			VALUES ($1, $2, 'churn.alert_raised', $3, 'status 400', 1)`, r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	purge := func() int64 {
		t.Helper()
		var n int64
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) { n, err = notify.PurgeCustomer(ctx, tx, "C-7"); return err }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := purge(); n != 2 {
		t.Errorf("first purge deleted %d, want 2", n)
	}
	if n := purge(); n != 0 {
		t.Errorf("second purge deleted %d, want 0", n)
	}
	left, err := notify.Parked(ctx, pool, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range left {
		got = append(got, p.Webhook+"/"+p.SignalID)
	}
	if diff := cmp.Diff([]string{"desk/s2", "desk/s3"}, got); diff != "" {
		t.Errorf("left parked (-want +got):\n%s", diff)
	}
}
