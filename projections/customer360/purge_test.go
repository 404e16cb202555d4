package customer360_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
)

// phoneHashOf reads the phone_hash column of a customer's profile.
func phoneHashOf(t *testing.T, f *fixture, customer string) []byte {
	t.Helper()
	var h []byte
	if err := f.env.Pool.QueryRow(t.Context(), `SELECT phone_hash FROM `+pgx.Identifier{f.target, "profiles"}.Sanitize()+
		` WHERE customer_id = $1`, customer).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

func hasPersonal(p *customer360.Profile) bool {
	return p.Name != nil || p.Phone != nil || p.IDNumber != nil || p.Address != nil || p.PhoneHash != nil
}

// TestFoldOfCustomerErasedDropsPersonalFields: folding customer.erased, in the batch
// of the registration or in a later one, leaves the profile without sealed fields and
// without phone search hash; the aggregates stay; data recorded after the erasure is
// kept; a replay from zero folds to the same profile.
func TestFoldOfCustomerErasedDropsPersonalFields(t *testing.T) {
	for _, batch := range []int{1, 1000} {
		t.Run("", func(t *testing.T) {
			f := newFixture(t)
			reg := register("+8613800007777")
			reg.IDNumber, reg.Address = events.Clear("110101199003077777"), events.Clear("北京市东城区1号")
			f.publish("C1", reg)
			f.publish("C1", events.RechargeCompleted{RechargeID: "R1", Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
			if p := f.fold(batch); !hasPersonal(p) || phoneHashOf(t, f, "C1") == nil {
				t.Fatalf("before the erasure the profile has no personal fields: the test proves nothing")
			}
			f.publish("C1", events.CustomerErased{Reason: "customer_request", Operator: "ops-li", RequestedAt: f.at})
			p := f.fold(batch)
			if hasPersonal(p) || phoneHashOf(t, f, "C1") != nil {
				t.Fatalf("after customer.erased: name %v phone %v id %v address %v hash %x", p.Name, p.Phone, p.IDNumber, p.Address, phoneHashOf(t, f, "C1"))
			}
			if p.LifetimeSpendFen != 5000 || p.EventsTotal != 3 {
				t.Errorf("spend %d, events %d; want 5000 and 3 (an erasure is counted, aggregates stay)", p.LifetimeSpendFen, p.EventsTotal)
			}
			// New data after the erasure is recorded again.
			f.publish("C1", events.CustomerUpdated{Phone: events.Clear("+8613900008888")})
			if p := f.fold(batch); p.Phone == nil || phoneHashOf(t, f, "C1") == nil {
				t.Errorf("a phone given after the erasure is not kept")
			}
			live := f.fold(batch)
			f.target = "customer360_v2"
			if replay := f.fold(7); replay.Name != nil || replay.Phone == nil || replay.Phone.KeyID != live.Phone.KeyID {
				t.Errorf("replay: name %v phone %v; want no name and the new phone", replay.Name, replay.Phone)
			}
		})
	}
}

// TestPurge: Purge removes the sealed fields and the phone hash of one customer's
// profile, leaves the others alone, and a second purge finds nothing.
func TestPurge(t *testing.T) {
	f := newFixture(t)
	f.publish("C1", register("+8613800001234"))
	f.publish("C2", register("+8613800005678"))
	f.publish("C1", events.BillIssued{BillID: "B1", Period: "2026-01", Amount: events.CNY(9900), DueDate: "2026-02-10"})
	f.fold(1000)
	proj := newProjection(t, f.target, f.keys)
	purge := func() int64 {
		t.Helper()
		var n int64
		err := pgx.BeginFunc(t.Context(), f.env.Pool, func(tx pgx.Tx) error {
			var err error
			n, err = proj.(projections.Purger).Purge(t.Context(), tx, "C1")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := purge(); n != 1 {
		t.Errorf("first purge changed %d rows, want 1", n)
	}
	if n := purge(); n != 0 {
		t.Errorf("second purge changed %d rows, want 0", n)
	}
	c1, err := customer360.Get(t.Context(), f.env.Pool, f.target, "C1")
	if err != nil {
		t.Fatal(err)
	}
	if hasPersonal(c1) || phoneHashOf(t, f, "C1") != nil || c1.LifetimeSpendFen != 9900 {
		t.Errorf("C1 after the purge: personal %v, hash %x, spend %d", hasPersonal(c1), phoneHashOf(t, f, "C1"), c1.LifetimeSpendFen)
	}
	c2, err := customer360.Get(t.Context(), f.env.Pool, f.target, "C2")
	if err != nil {
		t.Fatal(err)
	}
	if !hasPersonal(c2) || phoneHashOf(t, f, "C2") == nil {
		t.Errorf("C2 lost its personal fields to C1's purge")
	}
}
