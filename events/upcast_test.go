package events_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/schemas"
)

func TestUpcastRechargeV1(t *testing.T) {
	tests := []struct {
		name string
		v1   string
		want string // the v2 payload
	}{
		{"online", `{"recharge_id": "R-1", "amount": {"fen": 5000, "currency": "CNY"}, "method": "wechat_pay"}`,
			`{"recharge_id": "R-1", "amount": {"fen": 5000, "currency": "CNY"}, "credited": {"fen": 5000, "currency": "CNY"}, "method": "wechat_pay"}`},
		{"store", `{"recharge_id": "R-2", "amount": {"fen": 99999999999, "currency": "CNY"}, "method": "cash", "store_id": "SZ-1", "staff_id": "E1"}`,
			`{"recharge_id": "R-2", "amount": {"fen": 99999999999, "currency": "CNY"}, "credited": {"fen": 99999999999, "currency": "CNY"}, "method": "cash", "store_id": "SZ-1", "staff_id": "E1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, major, err := events.Upcast(events.TypeRechargeCompleted, 1, json.RawMessage(tt.v1))
			if err != nil {
				t.Fatal(err)
			}
			if major != 2 {
				t.Errorf("upcast to v%d, want v2", major)
			}
			if diff := cmp.Diff(jsonValue(t, []byte(tt.want)), jsonValue(t, got)); diff != "" {
				t.Errorf("upcast payload (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpcastLeavesCurrentAlone: a payload of the current version, or of a type that
// never evolved, comes back as it is, bytes and all.
func TestUpcastLeavesCurrentAlone(t *testing.T) {
	for _, tt := range []struct {
		eventType string
		major     int
	}{{events.TypeRechargeCompleted, 2}, {events.TypeBillPaid, 1}} {
		in := json.RawMessage(`{"any": "thing"}`)
		got, major, err := events.Upcast(tt.eventType, tt.major, in)
		if err != nil || major != tt.major || string(got) != string(in) {
			t.Errorf("Upcast(%s v%d) = %s, v%d, %v; want the payload unchanged", tt.eventType, tt.major, got, major, err)
		}
		if cur := events.CurrentMajor(tt.eventType, tt.major); cur != tt.major {
			t.Errorf("CurrentMajor(%s, %d) = %d", tt.eventType, tt.major, cur)
		}
	}
	if cur := events.CurrentMajor(events.TypeRechargeCompleted, 1); cur != 2 {
		t.Errorf("CurrentMajor(recharge.completed, 1) = %d, want 2", cur)
	}
}

// TestUpcastRefusals: an upcaster that cannot read its input names the field, under
// /data, and Decode reports it as an invalid event (parked, never folded).
func TestUpcastRefusals(t *testing.T) {
	for _, tt := range []struct {
		name, data, field string
	}{
		{"no amount", `{"recharge_id": "R-1", "method": "cash"}`, "/data/amount"},
		{"amount not an object", `{"recharge_id": "R-1", "amount": 5, "method": "cash"}`, "/data/amount"},
		{"not an object", `[1, 2]`, "/data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := events.Upcast(events.TypeRechargeCompleted, 1, json.RawMessage(tt.data))
			if err == nil {
				t.Fatal("upcast, want a refusal")
			}
			if diff := cmp.Diff([]string{tt.field}, fieldsOf(t, err)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			e := rechargeEvent()
			e.Data = json.RawMessage(tt.data)
			if _, err := events.Decode(e); !errors.Is(err, events.ErrInvalid) || errors.Is(err, events.ErrUnknownType) {
				t.Errorf("Decode: %v, want ErrInvalid", err)
			}
		})
	}
}

// TestDecodeBothVersions: the same recharge written as v1 and as v2 decodes to the same
// current Go value, and the SDK publishes the current version by default.
func TestDecodeBothVersions(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	v1, err := events.NewEvent(testCustomer, testNow, events.RechargeCompletedV1{RechargeID: "R-9", Amount: events.CNY(3000), Method: "alipay", StoreID: "GZ-7"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := events.NewEvent(testCustomer, testNow, events.RechargeCompleted{RechargeID: "R-9", Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "alipay", StoreID: "GZ-7"})
	if err != nil {
		t.Fatal(err)
	}
	if want := schemas.URI(events.TypeRechargeCompleted, 1); v1.DataSchema != want {
		t.Errorf("v1 dataschema %s, want %s", v1.DataSchema, want)
	}
	if want := schemas.URI(events.TypeRechargeCompleted, 2); v2.DataSchema != want {
		t.Errorf("default dataschema %s, want %s", v2.DataSchema, want)
	}
	var got []events.Payload
	for _, e := range []*events.Event{v1, v2} {
		e.Source = "urn:touchstream:test"
		if _, err := v.CheckInput(e); err != nil {
			t.Fatalf("%s: %v", e.DataSchema, err)
		}
		if _, err := v.CheckStored(e); err != nil {
			t.Fatalf("%s stored: %v", e.DataSchema, err)
		}
		p, err := events.Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if diff := cmp.Diff(got[1], got[0]); diff != "" {
		t.Errorf("v1 decodes differently from v2 (-v2 +v1):\n%s", diff)
	}

	up, err := events.UpcastEvent(v1)
	if err != nil {
		t.Fatal(err)
	}
	if up == v1 || up.DataSchema != v2.DataSchema || v1.DataSchema == v2.DataSchema {
		t.Errorf("UpcastEvent: dataschema %s (original now %s), want a copy at %s", up.DataSchema, v1.DataSchema, v2.DataSchema)
	}
	if diff := cmp.Diff(jsonValue(t, v2.Data), jsonValue(t, up.Data)); diff != "" {
		t.Errorf("UpcastEvent data (-v2 +upcast):\n%s", diff)
	}
	if same, err := events.UpcastEvent(v2); err != nil || same != v2 {
		t.Errorf("UpcastEvent of a current event: %p, %v; want the event itself", same, err)
	}
}

// TestUpcasterRegistry: one upcaster per type and version, each with a function.
func TestUpcasterRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, u := range events.Upcasters() {
		key := schemas.URI(u.Type, u.From)
		if seen[key] {
			t.Errorf("two upcasters from %s", key)
		}
		seen[key] = true
		if u.Up == nil || u.From < 1 {
			t.Errorf("upcaster from %s: From %d, Up nil %v", key, u.From, u.Up == nil)
		}
	}
	if !seen[schemas.URI(events.TypeRechargeCompleted, 1)] {
		t.Error("no upcaster from recharge.completed v1")
	}
}

// BenchmarkDecodeRecharge measures what upcasting adds to decoding a stored event.
func BenchmarkDecodeRecharge(b *testing.B) {
	v1 := rechargeEvent()
	v2 := rechargeEvent()
	v2.DataSchema = schemas.URI(events.TypeRechargeCompleted, 2)
	v2.Data = json.RawMessage(`{"recharge_id":"R-2026-000123","amount":{"fen":5000,"currency":"CNY"},"credited":{"fen":5000,"currency":"CNY"},"method":"wechat_pay"}`)
	for _, bb := range []struct {
		name string
		e    *events.Event
	}{{"v2", v2}, {"v1-upcast", v1}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Decode(bb.e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
