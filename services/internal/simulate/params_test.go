package simulate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// frozen are the SHA-256 of deploy/simulator.json per parameter version. The
// parameters are frozen: churn scorers are tuned against this population, so the
// simulator must never be tuned to a scorer. Changing a parameter means a new version
// (ParamsVersion) and a new entry here, never an edit of an existing one.
var frozen = map[int]string{
	1: "4b5a6866c26a2d4a2d6ba3d78b2f4b98ccf383d811142a1a9726f7a359ad7e62",
}

func TestParamsFrozen(t *testing.T) {
	b, err := os.ReadFile(deployFile("simulator.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseParams(b)
	if err != nil {
		t.Fatalf("deploy/simulator.json: %v", err)
	}
	sum := sha256.Sum256(b)
	got, want := hex.EncodeToString(sum[:]), frozen[p.Version]
	if got != want {
		t.Fatalf("deploy/simulator.json version %d has SHA-256 %s, frozen as %q: parameters are frozen per version; "+
			"a change needs a new version and a new entry in frozen", p.Version, got, want)
	}
}

func TestParamsRefused(t *testing.T) {
	base, err := os.ReadFile(deployFile("simulator.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(m map[string]any)
		raw    string // instead of change: this text
		want   []string
	}{
		{name: "unknown field", change: func(m map[string]any) { m["populaton"] = map[string]any{} },
			want: []string{`unknown field "populaton"`}},
		{name: "unknown nested field", change: func(m map[string]any) { obj(m, "churn")["drift_rate"] = 0.1 },
			want: []string{`unknown field "drift_rate"`}},
		{name: "version", change: func(m map[string]any) { m["version"] = 2 },
			want: []string{"version: 2 is not supported"}},
		{name: "share out of range", change: func(m map[string]any) { obj(m, "population")["prepaid_share"] = 1.5 },
			want: []string{"population.prepaid_share: 1.5 must be between 0 and 1"}},
		{name: "missing kind", change: func(m map[string]any) { delete(obj(m, "channel_mix"), "bill") },
			want: []string{"channel_mix.bill: required"}},
		{name: "unknown kind", change: func(m map[string]any) { obj(m, "channel_mix")["teleport"] = map[string]any{"store": 1} },
			want: []string{"channel_mix.teleport: unknown kind"}},
		{name: "hour weights", change: func(m map[string]any) { m["hour_weights"] = []any{1, 2} },
			want: []string{"hour_weights: want 24 weights"}},
		{name: "unknown segment", change: func(m map[string]any) { obj(obj(obj(m, "population"), "segments"), "individual")["student"] = 1 },
			want: []string{"population.segments.individual.student: unknown key"}},
		{name: "amounts not rising", change: func(m map[string]any) { obj(m, "recharge")["amounts_cny"] = []any{50, 30} },
			want: []string{"recharge.amounts_cny[1]"}},
		{name: "area code", change: func(m map[string]any) {
			obj(m, "population")["regions"].([]any)[0].(map[string]any)["area_code"] = "44"
		}, want: []string{"population.regions[0].area_code"}},
		{name: "time zone", change: func(m map[string]any) { m["utc_offset"] = "Asia/Shanghai" },
			want: []string{"utc_offset"}},
		{name: "several at once", change: func(m map[string]any) {
			obj(m, "population")["prepaid_share"] = -1
			obj(m, "churn")["drift_days"] = []any{70, 21}
			obj(obj(obj(m, "complaints"), "severities"), "urgent")["weight"] = 1
		}, want: []string{"population.prepaid_share", "churn.drift_days", "complaints.severities.urgent: unknown severity"}},
		{name: "trailing data", raw: string(base) + "{}", want: []string{"trailing data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.raw)
			if tt.change != nil {
				var m map[string]any
				if err := json.Unmarshal(base, &m); err != nil {
					t.Fatal(err)
				}
				tt.change(m)
				b, _ = json.Marshal(m)
			}
			_, err := ParseParams(b)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// obj returns the object at key, creating it if needed.
func obj(m map[string]any, key string) map[string]any {
	o, ok := m[key].(map[string]any)
	if !ok {
		o = map[string]any{}
		m[key] = o
	}
	return o
}

func TestConfigValidate(t *testing.T) {
	p := params(t)
	chs := channels(t, p)
	valid := Config{Gateway: "http://127.0.0.1:8080", Params: p, Channels: chs}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	without := func(name string) []Channel {
		var out []Channel
		for _, c := range chs {
			if c.Name != name {
				out = append(out, c)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"empty", func(c *Config) { *c = Config{} }, []string{"Gateway", "Params: required", "Channels: at least one"}},
		{"gateway scheme", func(c *Config) { c.Gateway = "127.0.0.1:8080" }, []string{"Gateway"}},
		{"rate", func(c *Config) { c.Rate = -5 }, []string{"Rate -5"}},
		{"batch size", func(c *Config) { c.BatchSize = 5000 }, []string{"BatchSize 5000"}},
		{"history", func(c *Config) { c.HistoryDays = -1 }, []string{"HistoryDays -1"}},
		{"missing channel", func(c *Config) { c.Channels = without("recharge") },
			[]string{`channel_mix.recharge.recharge: channel "recharge" is not configured`, `channel_mix.auto_debit.recharge`}},
		{"channel without rights", func(c *Config) {
			c.Channels = append(without("numbering"), Channel{Name: "numbering", Source: "urn:x", APIKey: "k", AllowedTypes: []string{"event.retracted"}})
		}, []string{`channel "numbering" may not write number.port_out_requested`}},
		{"key", func(c *Config) {
			c.Channels = append(without("survey"), Channel{Name: "survey", Source: "urn:s", AllowedTypes: []string{"survey.*"}})
		},
			[]string{"(survey).APIKey: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
