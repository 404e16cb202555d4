package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/schemas"
)

// rechargeEvent is a valid customer event to break one attribute at a time.
func rechargeEvent() *events.Event {
	return &events.Event{
		ID:         "0192f3a1-7c2e-7a10-9d4b-2f5e8c1a9b33",
		Source:     "urn:touchstream:channel:recharge",
		Type:       events.TypeRechargeCompleted,
		Subject:    testCustomer,
		Time:       testNow,
		DataSchema: schemas.URI(events.TypeRechargeCompleted, 1),
		Data:       json.RawMessage(`{"recharge_id": "R-2026-000123", "amount": {"fen": 5000, "currency": "CNY"}, "method": "wechat_pay"}`),
	}
}

// tickEvent is a valid partition-wide event.
func tickEvent() *events.Event {
	return &events.Event{
		ID:         "tick-2026-11-15T10",
		Source:     "urn:touchstream:scheduler",
		Type:       events.TypeClockTicked,
		Partition:  testPartition,
		Time:       testNow,
		DataSchema: schemas.URI(events.TypeClockTicked, 1),
		Data:       json.RawMessage(`{"period": "hour", "tick": "2026-11-15T10:00:00+08:00"}`),
	}
}

func TestCheckInputRefusesEnvelope(t *testing.T) {
	limits := events.DefaultLimits()
	v := testValidator(t, limits)
	tests := []struct {
		name    string
		base    func() *events.Event
		edit    func(e *events.Event)
		fields  []string
		unknown bool // errors.Is(err, ErrUnknownType)
	}{
		{"valid customer event", rechargeEvent, func(*events.Event) {}, nil, false},
		{"valid partition event", tickEvent, func(*events.Event) {}, nil, false},
		{"missing subject", rechargeEvent, func(e *events.Event) { e.Subject = "" }, []string{"/subject"}, false},
		{"subject with a space", rechargeEvent, func(e *events.Event) { e.Subject = "C 1001" }, []string{"/subject"}, false},
		{"subject is a phone with plus", rechargeEvent, func(e *events.Event) { e.Subject = "+8613800138000" }, []string{"/subject"}, false},
		{"subject too long", rechargeEvent, func(e *events.Event) { e.Subject = strings.Repeat("C", 65) }, []string{"/subject"}, false},
		{"missing id", rechargeEvent, func(e *events.Event) { e.ID = "" }, []string{"/id"}, false},
		{"id with a newline", rechargeEvent, func(e *events.Event) { e.ID = "1001\n" }, []string{"/id"}, false},
		{"missing source", rechargeEvent, func(e *events.Event) { e.Source = "" }, []string{"/source"}, false},
		{"missing type", rechargeEvent, func(e *events.Event) { e.Type = "" }, []string{"/type"}, false},
		{"unknown type", rechargeEvent, func(e *events.Event) {
			e.Type, e.DataSchema = "loyalty.boosted", schemas.URI("loyalty.boosted", 1)
		}, []string{"/type"}, true},
		{"unknown type without dataschema", rechargeEvent, func(e *events.Event) {
			e.Type, e.DataSchema = "loyalty.boosted", ""
		}, []string{"/type"}, true},
		{"unknown version", rechargeEvent, func(e *events.Event) {
			e.DataSchema = schemas.URI(events.TypeRechargeCompleted, 9)
		}, []string{"/dataschema"}, true},
		{"missing dataschema", rechargeEvent, func(e *events.Event) { e.DataSchema = "" }, []string{"/dataschema"}, false},
		{"foreign dataschema", rechargeEvent, func(e *events.Event) {
			e.DataSchema = "https://example.com/schemas/recharge.completed/v1"
		}, []string{"/dataschema"}, true},
		{"dataschema of another type", rechargeEvent, func(e *events.Event) {
			e.DataSchema = schemas.URI(events.TypeBillPaid, 1)
		}, []string{"/dataschema"}, false},
		{"partition-wide type with a subject", tickEvent, func(e *events.Event) { e.Subject = testCustomer }, []string{"/subject"}, false},
		{"partition out of range", tickEvent, func(e *events.Event) { e.Partition = testPartitions }, []string{"/partition"}, false},
		{"negative partition", tickEvent, func(e *events.Event) { e.Partition = -1 }, []string{"/partition"}, false},
		{"customer type without subject", rechargeEvent, func(e *events.Event) { e.Subject, e.Partition = "", testPartition }, []string{"/subject"}, false},
		{"missing time", rechargeEvent, func(e *events.Event) { e.Time = time.Time{} }, []string{"/time"}, false},
		{"time too far in the future", rechargeEvent, func(e *events.Event) {
			e.Time = testNow.Add(limits.MaxFuture + time.Second)
		}, []string{"/time"}, false},
		{"time within clock skew", rechargeEvent, func(e *events.Event) { e.Time = testNow.Add(limits.MaxFuture) }, nil, false},
		{"time older than MaxAge", rechargeEvent, func(e *events.Event) {
			e.Time = testNow.Add(-limits.MaxAge - time.Second)
		}, []string{"/time"}, false},
		{"late within MaxAge", rechargeEvent, func(e *events.Event) { e.Time = testNow.Add(-limits.MaxAge + time.Minute) }, nil, false},
		{"missing data", rechargeEvent, func(e *events.Event) { e.Data = nil }, []string{"/data"}, false},
		{"data not JSON", rechargeEvent, func(e *events.Event) { e.Data = json.RawMessage(`{"recharge_id":`) }, []string{"/data"}, false},
		{"data an array", rechargeEvent, func(e *events.Event) { e.Data = json.RawMessage(`[1, 2]`) }, []string{"/data"}, false},
		{"data null", rechargeEvent, func(e *events.Event) { e.Data = json.RawMessage(`null`) }, []string{"/data"}, false},
		{"integer with exponent", rechargeEvent, func(e *events.Event) {
			e.Data = json.RawMessage(`{"recharge_id": "R-1", "amount": {"fen": 5e3, "currency": "CNY"}, "method": "cash"}`)
		}, []string{"/data/amount/fen"}, false},
		{"integer with fraction zero", rechargeEvent, func(e *events.Event) {
			e.Data = json.RawMessage(`{"recharge_id": "R-1", "amount": {"fen": 5000.0, "currency": "CNY"}, "method": "cash"}`)
		}, []string{"/data/amount/fen"}, false},
		{"leap second", rechargeEvent, func(e *events.Event) {
			e.Type, e.DataSchema = events.TypeSubscriptionTerminated, schemas.URI(events.TypeSubscriptionTerminated, 1)
			e.Data = json.RawMessage(`{"reason": "port_out", "effective_at": "2016-12-31T23:59:60Z"}`)
		}, []string{"/data/effective_at"}, false},
		{"lower-case t in a timestamp", rechargeEvent, func(e *events.Event) {
			e.Type, e.DataSchema = events.TypeSubscriptionTerminated, schemas.URI(events.TypeSubscriptionTerminated, 1)
			e.Data = json.RawMessage(`{"reason": "port_out", "effective_at": "2026-11-18t00:00:00+08:00"}`)
		}, []string{"/data/effective_at"}, false},
		{"several fields at once", rechargeEvent, func(e *events.Event) {
			e.Data = json.RawMessage(`{"recharge_id": "", "amount": {"fen": 0, "currency": "CNY"}, "method": "cash", "phone": "13800138000"}`)
		}, []string{"/data/amount/fen", "/data/phone", "/data/recharge_id"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.base()
			tt.edit(e)
			_, err := v.CheckInput(e)
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %v refused", tt.fields)
			}
			if diff := cmp.Diff(tt.fields, fieldsOf(t, err)); diff != "" {
				t.Errorf("refused fields (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !errors.Is(err, events.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if got := errors.Is(err, events.ErrUnknownType); got != tt.unknown {
				t.Errorf("errors.Is(err, ErrUnknownType) = %v, want %v", got, tt.unknown)
			}
			if errors.Is(err, events.ErrTooLarge) {
				t.Errorf("errors.Is(err, ErrTooLarge) = true")
			}
		})
	}
}

func TestCheckStoredRefusesClearPersonal(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	e := rechargeEvent()
	e.Type, e.DataSchema = events.TypeComplaintOpened, schemas.URI(events.TypeComplaintOpened, 1)
	e.Data = json.RawMessage(`{"complaint_id": "CP-1", "category": "network", "severity": "high", "promised_by": "2026-11-17T18:00:00+08:00", "description": "信号差"}`)
	if _, err := v.CheckInput(e); err != nil {
		t.Fatalf("input form refused: %v", err)
	}
	_, err := v.CheckStored(e)
	if diff := cmp.Diff([]string{"/data/description"}, fieldsOf(t, err)); diff != "" {
		t.Errorf("refused fields (-want +got):\n%s", diff)
	}
}

func TestCheckStoredIgnoresTime(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	e := rechargeEvent()
	e.Time = testNow.AddDate(-3, 0, 0)
	if _, err := v.CheckStored(e); err != nil {
		t.Errorf("a three-year-old stored event was refused: %v", err)
	}
}

func TestDoorRefusesOversized(t *testing.T) {
	limits := events.DefaultLimits()
	limits.MaxSize = 520
	v := testValidator(t, limits)
	door := events.NewDoor(events.DefaultLayout(), v, newMemKeys(), true)
	small := rechargeEvent()
	large := rechargeEvent()
	large.ID = "large"
	large.Data = json.RawMessage(`{"recharge_id": "R-` + strings.Repeat("9", 60) + `", "amount": {"fen": 5000, "currency": "CNY"}, "method": "wechat_pay", "store_id": "` + strings.Repeat("S", 64) + `", "staff_id": "` + strings.Repeat("E", 64) + `"}`)
	msgs, errs := door.Prepare(t.Context(), []*events.Event{small, large})
	if errs[0] != nil || msgs[0] == nil {
		t.Fatalf("small event refused: %v", errs[0])
	}
	if len(msgs[0].Body) > limits.MaxSize {
		t.Fatalf("test setup: small event is %d bytes", len(msgs[0].Body))
	}
	err := errs[1]
	if err == nil || msgs[1] != nil {
		t.Fatal("large event accepted")
	}
	if !errors.Is(err, events.ErrTooLarge) || !errors.Is(err, events.ErrInvalid) || errors.Is(err, events.ErrUnknownType) {
		t.Errorf("error %v: want ErrTooLarge and ErrInvalid", err)
	}
	if diff := cmp.Diff([]string{""}, fieldsOf(t, err)); diff != "" {
		t.Errorf("refused fields (-want +got):\n%s", diff)
	}
	// A sealed event grows: the limit applies to the stored form.
	reg := &events.Event{ID: "reg", Source: "urn:test", Type: events.TypeCustomerRegistered, Subject: testCustomer, Time: testNow,
		DataSchema: schemas.URI(events.TypeCustomerRegistered, 1),
		Data:       json.RawMessage(`{"name": "张伟", "phone": "+8613800138000", "customer_type": "individual", "region": "CN-GD-SZ", "plan": {"id": "P58", "kind": "prepaid", "monthly_fee": {"fen": 5800, "currency": "CNY"}}}`)}
	if enc := reg.AppendJSON(nil); len(enc) > limits.MaxSize {
		t.Fatalf("test setup: clear event is %d bytes", len(enc))
	}
	if _, errs := door.Prepare(t.Context(), []*events.Event{reg}); !errors.Is(errs[0], events.ErrTooLarge) {
		t.Errorf("sealed event over the limit: error %v, want ErrTooLarge", errs[0])
	}
}

func TestUnmarshalEnvelope(t *testing.T) {
	valid := string(rechargeEvent().AppendJSON(nil))
	tests := []struct {
		name   string
		json   string
		fields []string // nil: decodes
	}{
		{"valid", valid, nil},
		{"partition-wide", string(tickEvent().AppendJSON(nil)), nil},
		{"old specversion", strings.Replace(valid, `"specversion":"1.0"`, `"specversion":"0.3"`, 1), []string{"/specversion"}},
		{"xml content", strings.Replace(valid, `"datacontenttype":"application/json"`, `"datacontenttype":"text/xml"`, 1), []string{"/datacontenttype"}},
		{"time without offset", strings.Replace(valid, `"time":"2026-11-15T10:30:00+08:00"`, `"time":"2026-11-15T10:30:00"`, 1), []string{"/time"}},
		{"partition and subject", strings.Replace(valid, `"subject":"C-1001"`, `"subject":"C-1001","partition":3`, 1), []string{"/partition"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e events.Event
			err := json.Unmarshal([]byte(tt.json), &e)
			if tt.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				again, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(jsonValue(t, []byte(tt.json)), jsonValue(t, again)); diff != "" {
					t.Errorf("re-encoded envelope differs (-in +out):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("decoded, want %v refused", tt.fields)
			}
			if diff := cmp.Diff(tt.fields, fieldsOf(t, err)); diff != "" {
				t.Errorf("refused fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	e := rechargeEvent()
	p, err := events.Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	// A v1 event: Decode upcasts it to the current Go type, crediting what was paid.
	want := &events.RechargeCompleted{RechargeID: "R-2026-000123", Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	tests := []struct {
		name    string
		edit    func(e *events.Event)
		unknown bool
	}{
		{"unknown version", func(e *events.Event) { e.DataSchema = schemas.URI(e.Type, 9) }, true},
		{"foreign dataschema", func(e *events.Event) { e.DataSchema = "urn:x" }, true},
		{"dataschema of another type", func(e *events.Event) { e.DataSchema = schemas.URI(events.TypeBillPaid, 1) }, false},
		{"unknown field", func(e *events.Event) { e.Data = json.RawMessage(`{"recharge_id": "R-1", "bonus": 1}`) }, false},
		{"wrong type", func(e *events.Event) { e.Data = json.RawMessage(`{"recharge_id": 7}`) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := rechargeEvent()
			tt.edit(e)
			_, err := events.Decode(e)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error %v: want ErrInvalid", err)
			}
			if got := errors.Is(err, events.ErrUnknownType); got != tt.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownType) = %v, want %v", err, got, tt.unknown)
			}
		})
	}
}

func TestRefusalsNeverQuotePersonalValues(t *testing.T) {
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	v := events.NewValidator(cat, 64, events.DefaultLimits(), nil)
	e := &events.Event{ID: "1", Source: "urn:test", Type: "customer.updated", Subject: "C1", Time: time.Now(),
		DataSchema: "https://touchstream.dev/schemas/customer.updated/v1", Data: []byte(`{"phone":"13800-SECRET-1"}`)}
	_, err = v.CheckInput(e)
	var fe events.FieldErrors
	if !errors.As(err, &fe) || len(fe) == 0 || fe[0].Field != "/data/phone" {
		t.Fatalf("want a refusal naming /data/phone, got %v", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("refusal quotes the personal value: %v", err)
	}
}
