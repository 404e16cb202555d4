package erase_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/services/internal/erase"
)

func purgedRows(rc *erase.Receipt) map[string]int64 {
	out := map[string]int64{}
	for _, p := range rc.Purged {
		out[p.Target] = p.Rows
	}
	return out
}

func stepStatus(rc *erase.Receipt) map[string]string {
	out := map[string]string{}
	for _, s := range rc.Steps {
		out[s.Name] = s.Status
	}
	return out
}

// TestEraseReceiptAndIdempotence: an erasure records customer.erased in the log,
// deletes the key, purges the profile (sealed fields and phone hash), the customer's
// dead letters and parked deliveries, and says so in its receipt, with the time after
// which no client can use the key. Run again, it records nothing new and says the
// customer is already erased. The other customer is untouched.
func TestEraseReceiptAndIdempotence(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	e.publish("C-GONE", at, registration("张伟", "+8613800138000", "440301199001011234"))
	e.publish("C-STAY", at, registration("李娜", "+8613900139000", "440301199202022345"))
	e.fold()
	before, err := customer360.Get(ctx, e.pool, "customer360_v1", "C-GONE")
	if err != nil || before.Phone == nil || before.PhoneHash == nil {
		t.Fatalf("before: %+v, %v", before, err)
	}
	keyID := before.Phone.KeyID
	if _, err := e.pool.Exec(ctx, `INSERT INTO projections.dead_letters (target, partition, stream, seq, customer_id, error)
		VALUES ('customer360_v1', 0, 'TOUCHPOINTS', 999, 'C-GONE', 'cannot apply')`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `CREATE SCHEMA notify; CREATE TABLE notify.parked (webhook text, signal_id text, signal_type text,
		body text, last_error text, attempts int, parked_at timestamptz DEFAULT now(), PRIMARY KEY (webhook, signal_id));
		INSERT INTO notify.parked VALUES ('desk', 's1', 'churn.alert_raised', '{"id":"s1","customer":"C-GONE"}', 'status 400', 1)`); err != nil {
		t.Fatal(err)
	}

	er := e.eraser(erase.Config{Privacy: erase.Privacy{KeyCacheTTL: 2 * time.Minute}}, nil)
	rc, err := er.Erase(ctx, erase.Request{Customer: "C-GONE", Reason: "customer_request", Operator: "ops-li"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{keyID}, rc.KeyIDs); diff != "" {
		t.Errorf("receipt key ids (-want +got):\n%s", diff)
	}
	want := map[string]int64{"customer360_v1": 1, "timeline_v1": 0, "projections.dead_letters": 1, "notify.parked": 1}
	if diff := cmp.Diff(want, purgedRows(rc)); diff != "" {
		t.Errorf("receipt purged rows (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"log": erase.StepDone, "keys": erase.StepDone, "purge": erase.StepDone}, stepStatus(rc)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if got := rc.CompleteAfter.Sub(rc.KeysErasedAt); got != 2*time.Minute {
		t.Errorf("complete after %s past the key deletion, want the clients' cache lifetime 2m", got)
	}
	if rc.Seq == 0 || rc.Resumed || rc.AlreadyErased || len(rc.Kept) == 0 {
		t.Errorf("receipt: %+v", rc)
	}
	if len(rc.Pending) != 2 {
		t.Errorf("pending folds %+v, want customer360_v1 and timeline_v1 (the projector has not folded the erasure yet)", rc.Pending)
	}

	// The log holds the erasure: customer.erased, no personal data, in the customer's partition.
	stream, _ := e.js.Stream(ctx, "TOUCHPOINTS")
	msg, err := stream.GetMsg(ctx, rc.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.layout.Subject(e.layout.PartitionOf("C-GONE"), events.TypeCustomerErased); msg.Subject != want {
		t.Errorf("event subject %s, want %s", msg.Subject, want)
	}
	if !strings.Contains(string(msg.Data), `"reason":"customer_request"`) || strings.Contains(string(msg.Data), "13800138000") {
		t.Errorf("event: %s", msg.Data)
	}

	gone, err := customer360.Get(ctx, e.pool, "customer360_v1", "C-GONE")
	if err != nil || gone.Name != nil || gone.Phone != nil || gone.IDNumber != nil || gone.PhoneHash != nil {
		t.Errorf("profile after the erasure: %+v, %v", gone, err)
	}
	stay, err := customer360.Get(ctx, e.pool, "customer360_v1", "C-STAY")
	if err != nil || stay.Phone == nil || stay.PhoneHash == nil {
		t.Errorf("the other customer's profile lost its data: %+v, %v", stay, err)
	}
	if keys, err := e.store.KeysByID(ctx, []string{keyID}); err != nil || len(keys) != 0 {
		t.Errorf("key %s still served: %v", keyID, err)
	}

	// The projector folds the erasure: nothing comes back; nothing is pending any more.
	e.fold()
	if gone, _ := customer360.Get(ctx, e.pool, "customer360_v1", "C-GONE"); gone.Phone != nil || gone.PhoneHash != nil {
		t.Errorf("after the fold of the erasure the profile holds personal data again")
	}
	again, err := er.Erase(ctx, erase.Request{Customer: "C-GONE", Reason: "customer_request", Operator: "ops-wang"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.AlreadyErased || again.Request != rc.Request || again.Seq != rc.Seq {
		t.Errorf("second run: already %v request %d seq %d; want the first request %d, seq %d", again.AlreadyErased, again.Request, again.Seq, rc.Request, rc.Seq)
	}
	if diff := cmp.Diff(map[string]string{"log": erase.StepAlready, "keys": erase.StepAlready, "purge": erase.StepAlready}, stepStatus(again)); diff != "" {
		t.Errorf("second run's steps (-want +got):\n%s", diff)
	}
	info, _ := stream.Info(ctx)
	var erasures int
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := stream.GetMsg(ctx, seq); err == nil && strings.HasSuffix(m.Subject, "."+events.TypeCustomerErased) {
			erasures++
		}
	}
	if erasures != 1 {
		t.Errorf("the log holds %d customer.erased events, want 1", erasures)
	}

	// Bad requests name their field.
	_, err = er.Erase(ctx, erase.Request{Customer: "C 1", Reason: "客户要求", Operator: "Zhang Wei"})
	for _, field := range []string{"customer:", "reason:", "operator:"} {
		if !errors.Is(err, erase.ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("bad request: %v; want ErrInvalid naming %s", err, field)
		}
	}
}

// TestEraseResumesAfterACrash: a run that stops after recording the erasure in the log
// and deleting the key (here: it cannot resolve a version) is completed by the next
// run, which says what was already done and does the rest.
func TestEraseResumesAfterACrash(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.publish("C-HALF", time.Now().Add(-time.Hour), registration("王芳", "+8613700137000", "440301198803033456"))
	e.fold()
	broken := e.eraser(erase.Config{}, func(target string) (projections.Projection, error) {
		return nil, errors.New("projector configuration missing")
	})
	if _, err := broken.Erase(ctx, erase.Request{Customer: "C-HALF", Reason: "customer_request", Operator: "ops-li"}); err == nil {
		t.Fatal("the broken run succeeded")
	}
	rc, err := e.eraser(erase.Config{}, nil).Erase(ctx, erase.Request{Customer: "C-HALF", Reason: "customer_request", Operator: "ops-li"})
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Resumed {
		t.Errorf("the second run did not resume the first request")
	}
	if diff := cmp.Diff(map[string]string{"log": erase.StepAlready, "keys": erase.StepAlready, "purge": erase.StepDone}, stepStatus(rc)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if len(rc.KeyIDs) != 1 || purgedRows(rc)["customer360_v1"] != 1 {
		t.Errorf("receipt: keys %v, purged %v", rc.KeyIDs, purgedRows(rc))
	}
	if p, _ := customer360.Get(ctx, e.pool, "customer360_v1", "C-HALF"); p.Phone != nil || p.PhoneHash != nil {
		t.Errorf("profile still holds personal data")
	}
}

// TestRetentionSweep: on a pinned clock, the sweep erases (with reason retention) the
// customers terminated longer ago than the limit, and only those: not a recent
// termination, not a customer who registered again, not one never terminated; a dry
// run lists without erasing; a second sweep finds nobody.
func TestRetentionSweep(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	now := time.Now().Truncate(time.Second) // pinned: every run of the sweep sees this instant
	old, recent := now.AddDate(0, 0, -400), now.AddDate(0, 0, -10)
	for i, c := range []string{"C-OLD", "C-RECENT", "C-BACK", "C-ACTIVE"} {
		e.publish(c, old.AddDate(0, -6, 0), registration("客户"+c, "+861380000000"+string(rune('0'+i)), "44030119900101000"+string(rune('0'+i))))
	}
	e.publish("C-OLD", old, events.SubscriptionTerminated{Reason: "customer_request", EffectiveAt: old})
	e.publish("C-RECENT", recent, events.SubscriptionTerminated{Reason: "port_out", EffectiveAt: recent})
	e.publish("C-BACK", old, events.SubscriptionTerminated{Reason: "non_payment", EffectiveAt: old})
	e.publish("C-BACK", old.AddDate(0, 1, 0), registration("客户C-BACK", "+8613800000009", "440301199001010009"))
	e.fold()
	er := e.eraser(erase.Config{Now: func() time.Time { return now }, Privacy: erase.Privacy{
		Retention: &erase.Retention{TerminatedFor: 365 * 24 * time.Hour, Operator: "retention-sweep", MaxPerSweep: 10}}}, nil)

	dry, err := er.Sweep(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]erase.Candidate{{Customer: "C-OLD", TerminatedAt: old}}, dry.Due, cmpTime); diff != "" || len(dry.Receipts) != 0 {
		t.Errorf("dry run due (-want +got):\n%s receipts %d", diff, len(dry.Receipts))
	}
	if p, _ := customer360.Get(ctx, e.pool, "customer360_v1", "C-OLD"); p.Phone == nil {
		t.Fatalf("the dry run erased")
	}
	s, err := er.Sweep(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Receipts) != 1 || s.Receipts[0].Customer != "C-OLD" || s.Receipts[0].Reason != erase.ReasonRetention ||
		s.Receipts[0].Operator != "retention-sweep" || !s.Receipts[0].RequestedAt.Equal(now) {
		t.Fatalf("sweep receipts: %+v", s.Receipts)
	}
	for c, erased := range map[string]bool{"C-OLD": true, "C-RECENT": false, "C-BACK": false, "C-ACTIVE": false} {
		p, err := customer360.Get(ctx, e.pool, "customer360_v1", c)
		if err != nil {
			t.Fatal(err)
		}
		if (p.Phone == nil) != erased {
			t.Errorf("%s: phone present %v, want erased %v", c, p.Phone != nil, erased)
		}
	}
	e.fold() // the timeline now holds C-OLD's erasure
	next, err := er.Sweep(ctx, false)
	if err != nil || len(next.Due) != 0 {
		t.Errorf("second sweep: due %+v, %v; want nobody", next.Due, err)
	}
}

var cmpTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

// TestPrivacyFile: deploy/privacy.json loads, and bad settings are refused naming
// their field.
func TestPrivacyFile(t *testing.T) {
	p, err := erase.LoadPrivacy("../../../deploy/privacy.json")
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyCacheTTL != time.Minute || p.Retention == nil || p.Retention.TerminatedFor < 365*24*time.Hour {
		t.Errorf("deploy/privacy.json: %+v %+v", p, p.Retention)
	}
	tests := []struct{ name, file, want string }{
		{"unknown field", `{"key_cache_ttl": "1m", "retention_days": 3}`, `unknown field "retention_days"`},
		{"cache too long", `{"key_cache_ttl": "2h"}`, "key_cache_ttl 2h0m0s"},
		{"cache not a duration", `{"key_cache_ttl": "soon"}`, "key_cache_ttl:"},
		{"no limit", `{"retention": {"operator": "retention-sweep"}}`, "retention.terminated_customers: required"},
		{"limit too short", `{"retention": {"terminated_customers": "1h"}}`, "retention.terminated_customers 1h0m0s"},
		{"operator with a space", `{"retention": {"terminated_customers": "30d", "operator": "Zhang Wei"}}`, `retention.operator "Zhang Wei"`},
		{"negative batch", `{"retention": {"terminated_customers": "30d", "max_per_sweep": -1}}`, "retention.max_per_sweep -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := erase.ParsePrivacy([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePrivacy: %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
