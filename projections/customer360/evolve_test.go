package customer360_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/schemas"
)

// TestRechargeVersionsFoldAlike writes one customer's history to two logs: once with
// recharge.completed v1, as producers wrote it before v2 existed, once with v2. Folded
// by the real runner (decode, stored-form validation, upcast, fold; a retraction makes
// the projection recompute the customer from the log through the timeline index), both
// logs give the same profile. A v1 recharge credited what was paid, so its v2
// equivalent has credited equal to amount.
func TestRechargeVersionsFoldAlike(t *testing.T) {
	for _, batch := range []int{1, 1000} {
		t.Run("", func(t *testing.T) {
			old, cur := newFixture(t), newFixture(t)
			cur.at = old.at // the same event times in both logs
			publishRechargeHistory(t, old, 1)
			publishRechargeHistory(t, cur, 2)
			got, want := old.fold(batch), cur.fold(batch)

			// Personal fields are sealed under each log's own keys: compare the rest.
			opts := cmp.Options{
				cmpopts.IgnoreUnexported(customer360.Profile{}),
				cmpopts.IgnoreFields(customer360.Profile{}, "Name", "Phone", "IDNumber", "Address", "PhoneHash"),
			}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("profile from v1 recharges differs from v2 (-v2 +v1):\n%s", diff)
			}
			// And both are right, not merely alike: 50 + 100 - 20 + 30 yuan, the
			// retracted 5000 left out, over seven events.
			if got.LifetimeSpendFen != 16000 || got.EventsTotal != 7 {
				t.Errorf("lifetime spend %d fen over %d events, want 16000 over 7", got.LifetimeSpendFen, got.EventsTotal)
			}
		})
	}
}

// publishRechargeHistory publishes a registration, four recharges at the given major
// version of recharge.completed, a partial reversal and the retraction of a recharge
// keyed twice.
func publishRechargeHistory(t *testing.T, f *fixture, major int) {
	t.Helper()
	recharge := func(id string, fen int64, method, store string) events.Payload {
		if major == 1 {
			return events.RechargeCompletedV1{RechargeID: id, Amount: events.CNY(fen), Method: method, StoreID: store}
		}
		return events.RechargeCompleted{RechargeID: id, Amount: events.CNY(fen), Credited: events.CNY(fen), Method: method, StoreID: store}
	}
	f.publish("C1", register("+8613800007777"))
	first := f.publish("C1", recharge("R1", 5000, "wechat_pay", ""))
	if want := schemas.URI(events.TypeRechargeCompleted, major); first.DataSchema != want {
		t.Fatalf("published %s, want %s", first.DataSchema, want)
	}
	store := f.publish("C1", recharge("R2", 10000, "cash", "SZ-FT-012"))
	twice := f.publish("C1", recharge("R3", 500000, "alipay", ""))
	f.publish("C1", events.RechargeReversed{Recharge: store.Ref(), Amount: events.CNY(2000), Reason: "customer_request"})
	f.publish("C1", events.EventRetracted{Target: twice.Ref(), Reason: "keyed twice"})
	f.publish("C1", recharge("R4", 3000, "voucher", ""))
}
