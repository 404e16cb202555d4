package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/notify"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

const notifyUsage = `usage:
  touchstream notify run [flags]                          deliver signals to the webhooks of deploy/webhooks.json
  touchstream notify parked [--webhook NAME] [--limit N] [--json]
  touchstream notify redeliver WEBHOOK SIGNAL_ID...       re-POST parked deliveries now (or --all of WEBHOOK)
  touchstream notify discard WEBHOOK SIGNAL_ID...         drop parked deliveries without delivering them

run consumes SIGNALS with one durable per webhook (notify-<name>) and POSTs each
signal, signed (X-Touchstream-Signature) with the secret in the environment variable
the webhook's secret_env names, Idempotency-Key = signal id. Transient failures (408,
429, 5xx, network, timeout) are retried with exponential backoff; a refusal (other 4xx)
or a failure after every retry is parked in PostgreSQL (notify.parked) for parked,
redeliver and discard. redeliver needs the same secrets as run.

flags:
`

// notifyFlags are the notifier's own settings.
type notifyFlags struct {
	webhooks    string
	initial     time.Duration
	multiplier  float64
	maxInterval time.Duration
	maxRetries  int
	ackWait     time.Duration
	webhook     string
	limit       int
	all         bool
	asJSON      bool
}

// runNotify runs `touchstream notify`.
func runNotify(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("notify", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), notifyUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	var f notifyFlags
	fs.StringVar(&f.webhooks, "webhooks", config.String(env, "TOUCHSTREAM_WEBHOOKS_FILE", ""), "webhooks file (env TOUCHSTREAM_WEBHOOKS_FILE); default <deploy-dir>/webhooks.json")
	fs.DurationVar(&f.initial, "retry-initial", config.Duration(env, "TOUCHSTREAM_NOTIFY_RETRY_INITIAL", notify.DefaultInitialInterval), "run: wait before the first retry (env TOUCHSTREAM_NOTIFY_RETRY_INITIAL)")
	fs.Float64Var(&f.multiplier, "retry-multiplier", notify.DefaultMultiplier, "run: each retry waits this many times longer than the previous one")
	fs.DurationVar(&f.maxInterval, "retry-max-interval", config.Duration(env, "TOUCHSTREAM_NOTIFY_RETRY_MAX_INTERVAL", notify.DefaultMaxInterval), "run: longest wait between retries, and cap of a Retry-After (env TOUCHSTREAM_NOTIFY_RETRY_MAX_INTERVAL)")
	fs.IntVar(&f.maxRetries, "max-retries", notify.DefaultMaxRetries, "run: retries of a transient failure before the delivery is parked")
	fs.DurationVar(&f.ackWait, "ack-wait", 0, "run: how long SIGNALS waits for a delivery before handing it out again; default the retry budget plus 10s")
	fs.StringVar(&f.webhook, "webhook", "", "parked: only this webhook's")
	fs.IntVar(&f.limit, "limit", 100, "parked: at most this many, oldest first")
	fs.BoolVar(&f.all, "all", false, "redeliver: every parked delivery of WEBHOOK")
	fs.BoolVar(&f.asJSON, "json", false, "parked: print JSON instead of a table")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: notify: run, parked, redeliver or discard", errUsage)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if f.webhooks == "" {
		f.webhooks = c.DeployFile("webhooks.json")
	}
	switch pos[0] {
	case "run":
		if len(pos) != 1 {
			return fmt.Errorf("%w: notify run: unexpected argument %q", errUsage, pos[1])
		}
		return notifyRun(ctx, &c, f, env, stdout)
	case "parked":
		if len(pos) != 1 {
			return fmt.Errorf("%w: notify parked: unexpected argument %q (use --webhook)", errUsage, pos[1])
		}
		return notifyParked(ctx, &c, f, stdout)
	case "redeliver":
		return notifyRedeliver(ctx, &c, f, env, pos[1:], stdout)
	case "discard":
		if len(pos) < 3 {
			return fmt.Errorf("%w: notify discard: name the webhook and at least one signal id", errUsage)
		}
		pool, err := pgsetup.Open(ctx, c.DatabaseURL, 2, false)
		if err != nil {
			return err
		}
		defer pool.Close()
		for _, id := range pos[2:] {
			if err := notify.Discard(ctx, pool, pos[1], id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "discarded %s for %s\n", id, pos[1])
		}
		return nil
	default:
		return fmt.Errorf("%w: notify: unknown command %q: run, parked, redeliver or discard", errUsage, pos[0])
	}
}

// notifyConfig builds the notifier's configuration from the webhooks file and flags.
func notifyConfig(c *config.Common, f notifyFlags, env config.Env) (notify.Config, error) {
	hooks, err := notify.Load(f.webhooks)
	if err != nil {
		return notify.Config{}, err
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return notify.Config{}, err
	}
	cfg := notify.Config{
		Webhooks: hooks, Env: env, Stream: def.SignalsConfig().Name,
		InitialInterval: f.initial, Multiplier: f.multiplier, MaxInterval: f.maxInterval, MaxRetries: f.maxRetries, AckWait: f.ackWait,
	}
	if f.maxRetries == 0 {
		cfg.MaxRetries = -1 // the flag's 0 means none
	}
	if err := cfg.Validate(); err != nil {
		return notify.Config{}, fmt.Errorf("%w: %s: %w", errUsage, f.webhooks, err)
	}
	return cfg, nil
}

func notifyRun(ctx context.Context, c *config.Common, f notifyFlags, env config.Env, stdout io.Writer) error {
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required: signals are read from SIGNALS", errUsage)
	}
	cfg, err := notifyConfig(c, f, env)
	if err != nil {
		return err
	}
	log := c.Logger().With("service", "notify")
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 4, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := natsconn.Dial(natsconn.For(c, "notify"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	n, err := notify.New(cfg, notify.Deps{Pool: pool, NATS: nc, Registry: reg, Log: log})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}}, log)
	if err != nil {
		return err
	}
	names := make([]string, len(cfg.Webhooks))
	for i, h := range cfg.Webhooks {
		names[i] = h.Name
	}
	fmt.Fprintf(stdout, "delivering signals from %s to %d webhooks (%s) (admin %s)\n", cfg.Stream, len(names), strings.Join(names, ", "), c.AdminAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	return g.Wait()
}

func notifyParked(ctx context.Context, c *config.Common, f notifyFlags, stdout io.Writer) error {
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 2, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := notify.Migrate(ctx, pool); err != nil {
		return err
	}
	ps, err := notify.Parked(ctx, pool, f.webhook, f.limit)
	if err != nil {
		return err
	}
	if f.asJSON {
		if ps == nil {
			ps = []notify.ParkedDelivery{}
		}
		return writeJSON(stdout, ps)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WEBHOOK\tSIGNAL ID\tTYPE\tATTEMPTS\tPARKED AT\tLAST ERROR")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Webhook, p.SignalID, p.SignalType, p.Attempts, stamp(p.ParkedAt), p.LastError)
	}
	return tw.Flush()
}

func notifyRedeliver(ctx context.Context, c *config.Common, f notifyFlags, env config.Env, pos []string, stdout io.Writer) error {
	if len(pos) == 0 || (len(pos) == 1) != f.all {
		return fmt.Errorf("%w: notify redeliver: name the webhook and signal ids, or the webhook and --all", errUsage)
	}
	cfg, err := notifyConfig(c, f, env)
	if err != nil {
		return err
	}
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 2, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := notify.New(cfg, notify.Deps{Pool: pool, Log: c.Logger().With("service", "notify")})
	if err != nil {
		return err
	}
	webhook, ids := pos[0], pos[1:]
	if f.all {
		ps, err := notify.Parked(ctx, pool, webhook, 100_000)
		if err != nil {
			return err
		}
		for _, p := range ps {
			ids = append(ids, p.SignalID)
		}
	}
	var errs []error
	done := 0
	for _, id := range ids {
		if err := n.Redeliver(ctx, webhook, id); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	fmt.Fprintf(stdout, "redelivered %d of %d parked deliveries to %s\n", done, len(ids), webhook)
	return errors.Join(errs...)
}
