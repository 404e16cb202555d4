package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/gateway"
)

// The development channel file loads, its keys are the documented development-only
// ones, and what the domain forbids is not allowed.
func TestDevelopmentChannelFile(t *testing.T) {
	chs, err := gateway.LoadChannels("../../../deploy/channels.json")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range chs {
		names = append(names, c.Name)
		if got, want := c.APIKeys[0].SHA256, gateway.HashKey("dev-"+c.Name+"-key"); got != want {
			t.Errorf("channel %s: first key is not the hash of the development key dev-%s-key", c.Name, c.Name)
		}
		if c.NATSUser == "" {
			t.Errorf("channel %s: no NATS user", c.Name)
		}
	}
	want := []string{"store", "callcenter", "online", "recharge", "dealer", "billing", "numbering", "club", "survey", "crm-import"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("channels (-want +got):\n%s", diff)
	}
	byName := map[string]gateway.Channel{}
	for _, c := range chs {
		byName[c.Name] = c
	}
	if got := time.Duration(byName["crm-import"].MaxAge); got != 3650*24*time.Hour {
		t.Errorf("crm-import max_age %s, want 3650 days", got)
	}
	// Every allowed type that is not a family wildcard exists in the catalog.
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, typ := range cat.Types() {
		known[typ] = true
	}
	for _, c := range chs {
		for _, typ := range c.AllowedTypes {
			if !strings.HasSuffix(typ, ".*") && !known[typ] {
				t.Errorf("channel %s allows %q, which the catalog does not know", c.Name, typ)
			}
		}
	}
}

func TestChannelValidation(t *testing.T) {
	valid := func() gateway.Channel {
		return gateway.Channel{Name: "store", Source: "urn:s", NATSUser: "u", AllowedTypes: []string{"recharge.completed"},
			APIKeys: []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k")}}}
	}
	tests := []struct {
		name   string
		mutate func([]gateway.Channel) []gateway.Channel
		want   []string // substrings, one per expected error
	}{
		{name: "valid", mutate: func(c []gateway.Channel) []gateway.Channel { return c }},
		{name: "bad name", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].Name = "Store_1"; return c }, want: []string{`channels[0].name "Store_1"`}},
		{name: "no source", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].Source = ""; return c }, want: []string{"channels[0] (store).source: required"}},
		{name: "shared source", mutate: func(c []gateway.Channel) []gateway.Channel {
			o := valid()
			o.Name, o.NATSUser, o.APIKeys = "other", "u2", []gateway.APIKey{{ID: "k", SHA256: gateway.HashKey("k2")}}
			return append(c, o)
		}, want: []string{`channels[1] (other).source "urn:s": already used by channels[0]`}},
		{name: "clear key instead of hash", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].APIKeys[0].SHA256 = "dev-store-key"; return c },
			want: []string{"channels[0] (store).api_keys[0].sha256"}},
		{name: "no keys", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].APIKeys = nil; return c }, want: []string{"api_keys: at least one"}},
		{name: "one key two channels", mutate: func(c []gateway.Channel) []gateway.Channel {
			o := valid()
			o.Name, o.NATSUser, o.Source = "other", "u2", "urn:o"
			return append(c, o)
		}, want: []string{"channels[1] (other).api_keys[0].sha256: the same key is already channels[0] (store).api_keys[0]"}},
		{name: "reserved type", mutate: func(c []gateway.Channel) []gateway.Channel {
			c[0].AllowedTypes = append(c[0].AllowedTypes, "points.redeemed")
			return c
		}, want: []string{`allowed_types[1] "points.redeemed": only the redemption service produces it`}},
		{name: "a family covering a reserved type", mutate: func(c []gateway.Channel) []gateway.Channel {
			c[0].AllowedTypes = append(c[0].AllowedTypes, "customer.*")
			return c
		}, want: []string{`allowed_types[1] "customer.*": covers customer.erased, which only the erasure command (touchstream erase) produces`}},
		{name: "bad type", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].AllowedTypes = []string{"Recharge"}; return c }, want: []string{`allowed_types[0] "Recharge"`}},
		{name: "bad rate limit", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].RateLimit = &gateway.RateLimit{}; return c },
			want: []string{"rate_limit.events_per_second", "rate_limit.burst"}},
		{name: "no nats user", mutate: func(c []gateway.Channel) []gateway.Channel { c[0].NATSUser = ""; return c }, want: []string{"nats_user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gateway.ValidateChannels(tt.mutate([]gateway.Channel{valid()}))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateChannels: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateChannels: nil, want %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseChannels(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string
	}{
		{name: "unknown field", json: `{"channels":[{"name":"a","key":"x"}]}`, want: `unknown field "key"`},
		{name: "max_age not a duration", json: `{"channels":[{"name":"a","max_age":5}]}`, want: `"720h" or "3650d"`},
		{name: "max_age in days", json: `{"channels":[{"name":"a","source":"s","nats_user":"u","allowed_types":["a.b"],"max_age":"10d","api_keys":[{"id":"k","sha256":"` + gateway.HashKey("x") + `"}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gateway.ParseChannels([]byte(tt.json))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ParseChannels: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("ParseChannels: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
