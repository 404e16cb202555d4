package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
)

func runStreams(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "apply" && args[0] != "inspect") {
		fmt.Fprintln(stdout, "usage: touchstream streams apply|inspect [flags]")
		fmt.Fprintln(stdout, "  apply    create or update the streams of deploy/streams.json (idempotent)")
		fmt.Fprintln(stdout, "  inspect  show every stream: messages, bytes, first and last sequence, settings")
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub := args[0]
	fs := newFlags("streams "+sub, stdout)
	var c config.Common
	c.Register(fs, env)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	log := c.Logger()
	nc, err := natsconn.Dial(natsconn.For(&c, "streams"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if sub == "apply" {
		changes, err := streams.Apply(ctx, js, def)
		for _, ch := range changes {
			fmt.Fprintf(stdout, "%-20s %s\n", ch.Stream, ch.Action)
		}
		return err
	}
	return inspectStreams(ctx, js, def, *asJSON, stdout)
}

type streamStatus struct {
	Name      string   `json:"name"`
	Subjects  []string `json:"subjects"`
	Messages  uint64   `json:"messages"`
	Bytes     uint64   `json:"bytes"`
	FirstSeq  uint64   `json:"first_seq"`
	LastSeq   uint64   `json:"last_seq"`
	Replicas  int      `json:"replicas"`
	DupWindow string   `json:"duplicate_window"`
	Consumers int      `json:"consumers"`
}

func inspectStreams(ctx context.Context, js jetstream.JetStream, def streams.Definition, asJSON bool, stdout io.Writer) error {
	var out []streamStatus
	for _, sc := range append(def.Config(), def.SignalsConfig()) {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		out = append(out, streamStatus{Name: sc.Name, Subjects: info.Config.Subjects, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Replicas: info.Config.Replicas,
			DupWindow: info.Config.Duplicates.String(), Consumers: info.State.Consumers})
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\tREPLICAS\tDUP WINDOW\tCONSUMERS\tSUBJECTS")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%v\n", s.Name, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, s.Replicas, s.DupWindow, s.Consumers, s.Subjects)
	}
	return tw.Flush()
}
