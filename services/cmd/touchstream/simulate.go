package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/simulate"
)

// runSimulate sends simulated traffic of a telecom population through the gateway's
// HTTP door, as the channel systems would: live (event time now) or N days of history.
//
// The channels (sources, allowed types, late-arrival limits) come from channels.json;
// their clear API keys from the parameter file's dev_api_keys or --api-keys. Those are
// the well-known DEVELOPMENT keys ("dev-<channel>-key"): never use them in production.
func runSimulate(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("simulate", stdout)
	var c config.Common
	c.Register(fs, env)
	var cfg simulate.Config
	fs.StringVar(&cfg.Gateway, "gateway", config.String(env, "TOUCHSTREAM_GATEWAY_URL", "http://127.0.0.1:8080"), "gateway base URL (env TOUCHSTREAM_GATEWAY_URL)")
	fs.Float64Var(&cfg.Rate, "rate", simulate.DefaultRate, "events per second sent")
	fs.IntVar(&cfg.Customers, "customers", 0, "initial population (default: the parameter file's)")
	fs.Uint64Var(&cfg.Seed, "seed", 42, "random seed: the same seed and parameters give the same customers and events, ids included")
	fs.IntVar(&cfg.HistoryDays, "history-days", 0, "generate this many days of past activity ending now, then stop (0: live, event time = now)")
	fs.Int64Var(&cfg.MaxEvents, "max-events", 0, "stop after this many events (0: no limit)")
	fs.IntVar(&cfg.BatchSize, "batch-size", simulate.DefaultBatchSize, "most events in one request")
	fs.IntVar(&cfg.Concurrency, "concurrency", simulate.DefaultConcurrency, "requests in flight")
	fs.DurationVar(&cfg.Linger, "linger", simulate.DefaultLinger, "how long a batch waits to fill before it is sent")
	paramsFile := fs.String("params", "", "simulator parameters (default <deploy-dir>/simulator.json)")
	channelsFile := fs.String("channels", "", "channel definitions (default <deploy-dir>/channels.json)")
	keys := fs.String("api-keys", config.String(env, "TOUCHSTREAM_SIMULATOR_API_KEYS", ""),
		"channel=key,... development API keys overriding the parameter file's dev_api_keys (env TOUCHSTREAM_SIMULATOR_API_KEYS)")
	truthFile := fs.String("truth", "", "when done, write the population's ground truth (drift, outcomes) as JSON lines to this file")
	quiet := fs.Bool("quiet", false, "no progress line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *paramsFile == "" {
		*paramsFile = c.DeployFile("simulator.json")
	}
	if *channelsFile == "" {
		*channelsFile = c.DeployFile("channels.json")
	}
	params, err := simulate.LoadParams(*paramsFile)
	if err != nil {
		return fmt.Errorf("%w: --params: %w", errUsage, err)
	}
	chs, err := gateway.LoadChannels(*channelsFile)
	if err != nil {
		return fmt.Errorf("%w: --channels: %w", errUsage, err)
	}
	if cfg.Channels, err = simulatorChannels(chs, params.DevAPIKeys, *keys); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.Params = params
	cfg.Log = c.Logger().With("service", "simulate")
	if !*quiet {
		cfg.Progress, cfg.Terminal = stdout, isTerminal(stdout)
	}
	sim, err := simulate.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	runErr := sim.Run(ctx)
	if *truthFile != "" {
		if err := writeTruth(*truthFile, sim.Truth()); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}

// simulatorChannels pairs the channels of channels.json with their clear keys, and
// checks each key against the channel's stored hashes, so that a wrong key is found
// before anything is sent. Channels without a key are left out.
func simulatorChannels(chs []gateway.Channel, devKeys map[string]string, override string) ([]simulate.Channel, error) {
	keys := map[string]string{}
	for name, k := range devKeys {
		keys[name] = k
	}
	field := map[string]string{}
	for name := range keys {
		field[name] = "dev_api_keys." + name
	}
	if override != "" {
		for _, kv := range strings.Split(override, ",") {
			name, key, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || name == "" || key == "" {
				return nil, fmt.Errorf("--api-keys: %q: want channel=key", kv)
			}
			keys[name], field[name] = key, "--api-keys "+name
		}
	}
	var errs []error
	var out []simulate.Channel
	known := map[string]bool{}
	for _, ch := range chs {
		known[ch.Name] = true
		key, ok := keys[ch.Name]
		if !ok {
			continue
		}
		hash := gateway.HashKey(key)
		if !slices.ContainsFunc(ch.APIKeys, func(k gateway.APIKey) bool { return k.SHA256 == hash }) {
			errs = append(errs, fmt.Errorf("%s: not a key of channel %s in channels.json", field[ch.Name], ch.Name))
			continue
		}
		out = append(out, simulate.Channel{Name: ch.Name, Source: ch.Source, AllowedTypes: ch.AllowedTypes,
			MaxAge: time.Duration(ch.MaxAge), APIKey: key})
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range keys {
			if !yield(n) {
				return
			}
		}
	}) {
		if !known[name] {
			errs = append(errs, fmt.Errorf("%s: no channel %s in channels.json", field[name], name))
		}
	}
	return out, errors.Join(errs...)
}

// isTerminal reports whether w is a terminal (character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func writeTruth(path string, truth []simulate.Truth) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--truth: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, t := range truth {
		if err := enc.Encode(t); err != nil {
			_ = f.Close()
			return fmt.Errorf("--truth %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--truth %s: %w", path, err)
	}
	return nil
}
