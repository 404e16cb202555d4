package gateway_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/gateway"
)

// TestCustomerErasedHasOneProducer: customer.erased is written only by the erasure
// command. No channel may be allowed it, not even through the customer.* family (a
// configuration that would is refused: the channel's NATS permission would cover it),
// and the gateway refuses it from every channel.
func TestCustomerErasedHasOneProducer(t *testing.T) {
	if _, ok := gateway.ReservedTypes[events.TypeCustomerErased]; !ok {
		t.Fatalf("ReservedTypes lacks %s", events.TypeCustomerErased)
	}
	chs := testChannels()
	chs[0].AllowedTypes = append(chs[0].AllowedTypes, events.TypeCustomerErased)
	err := gateway.ValidateChannels(chs)
	if err == nil || !strings.Contains(err.Error(), `"customer.erased": only the erasure command`) {
		t.Fatalf("ValidateChannels with customer.erased allowed: %v", err)
	}

	// deploy/channels.json: every channel is refused it.
	deployed, err := gateway.LoadChannels(filepath.Join("..", "..", "..", "deploy", "channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range deployed {
		for _, a := range ch.AllowedTypes {
			if a == events.TypeCustomerErased || a == "customer.*" {
				t.Errorf("deploy/channels.json: channel %s is allowed %q", ch.Name, a)
			}
		}
	}

	chs = testChannels()
	chs[0].AllowedTypes = []string{"customer.*"}
	if err := gateway.ValidateChannels(chs); err == nil || !strings.Contains(err.Error(), `"customer.*": covers customer.erased`) {
		t.Fatalf("ValidateChannels with the customer.* family: %v, want it refused", err)
	}

	// A channel that registers customers never erases them.
	e := newEnv(t, envOpts{cfg: func(c *gateway.Config) { c.Channels[0].AllowedTypes = []string{"customer.registered"} }})
	erased := map[string]any{"specversion": "1.0", "id": "erase-1", "source": storeSrc, "type": events.TypeCustomerErased,
		"subject": "C-ERASE-1", "time": now(), "dataschema": "https://touchstream.dev/schemas/customer.erased/v1",
		"data": map[string]any{"reason": "customer_request", "operator": "ops-li", "requested_at": now()}}
	got := e.post(t, storeKey, ctStructured, mustJSON(t, erased), nil)
	if got.code != http.StatusForbidden {
		t.Fatalf("customer.erased from a channel that registers customers: %d %s, want 403", got.code, got.raw)
	}
	if len(got.body.Results) != 1 || len(got.body.Results[0].Errors) == 0 || got.body.Results[0].Errors[0].Field != "/type" {
		t.Errorf("refusal does not name /type: %s", got.raw)
	}
	if n := e.msgCount(t); n != 0 {
		t.Errorf("the log holds %d messages, want 0", n)
	}
	reg := registeredEvent(storeSrc, "reg-1", "C-ERASE-1")
	if got := e.post(t, storeKey, ctStructured, mustJSON(t, reg), nil); got.code != http.StatusOK && got.code != http.StatusCreated {
		t.Fatalf("customer.registered from the same channel: %d %s", got.code, got.raw)
	}
}
