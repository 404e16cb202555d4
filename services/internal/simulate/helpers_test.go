package simulate

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

func deployFile(name string) string { return filepath.Join("..", "..", "..", "deploy", name) }

// params loads the frozen parameter file.
func params(t testing.TB) *Params {
	t.Helper()
	p, err := LoadParams(deployFile("simulator.json"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// channels are the development channels of deploy/channels.json with the clear keys
// of the parameter file.
func channels(t testing.TB, p *Params) []Channel {
	t.Helper()
	chs, err := gateway.LoadChannels(deployFile("channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Channel, 0, len(chs))
	for _, c := range chs {
		key := p.DevAPIKeys[c.Name]
		match := false
		for _, k := range c.APIKeys {
			match = match || k.SHA256 == gateway.HashKey(key)
		}
		if !match {
			t.Fatalf("dev_api_keys.%s does not match channels.json", c.Name)
		}
		out = append(out, Channel{Name: c.Name, Source: c.Source, AllowedTypes: c.AllowedTypes,
			MaxAge: time.Duration(c.MaxAge), APIKey: key})
	}
	return out
}

// fixedNow is the clock of the tests.
var fixedNow = time.Date(2026, 11, 23, 14, 0, 0, 0, time.FixedZone("UTC+08:00", 8*3600))

// history generates days of history for a population ending at fixedNow, calling fn
// for every draft. With routed, events are routed as they would be sent at fixedNow
// (older ones than a channel accepts go to the history channel, or are not
// generated); without, every event keeps its channel, to measure behaviour.
func history(t testing.TB, p *Params, seed uint64, customers, days int, routed bool, fn func(*Draft)) *Generator {
	t.Helper()
	cfg := GeneratorConfig{Params: p, Channels: channels(t, p), Seed: seed,
		Customers: customers, Start: fixedNow.AddDate(0, 0, -days), End: fixedNow}
	if routed {
		cfg.SendTime = fixedNow
	}
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ok := g.Next()
		if !ok {
			return g
		}
		fn(d)
	}
}
