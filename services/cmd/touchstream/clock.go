package main

import (
	"context"
	"fmt"
	"io"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/clock"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
)

// runClock publishes clock.ticked to every partition at each period boundary.
func runClock(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("clock", stdout)
	var c config.Common
	c.Register(fs, env)
	period := fs.String("period", "day", "tick period: day or hour")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return err
	}
	log := c.Logger().With("service", "clock")
	nc, err := natsconn.Dial(natsconn.For(&c, "clock"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := events.NewPublisher(ctx, nc, events.WithLayout(def.Layout), events.WithSource(clock.Source))
	if err != nil {
		return err
	}
	s, err := clock.New(clock.Config{Period: *period, Location: tiers.Location()}, pub, def.Layout.Partitions, log)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	fmt.Fprintf(stdout, "clock: %s ticks to %d partitions (%s)\n", *period, def.Layout.Partitions, tiers.TimeZone)
	return s.Run(ctx)
}
