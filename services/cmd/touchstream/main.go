// Command touchstream runs touchstream's services and operations tools. Each service
// is a subcommand (gateway, keys, projector, query, ...); `run` starts them all on an
// embedded default for development. `touchstream help` lists the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/config"
)

// command is one subcommand. run gets the arguments after the command name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env config.Env, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "start everything on an embedded default (NATS, key service, gateway, ...) with the simulator", runAll},
		{"nats", "run the embedded nats-server alone, with its store under the data directory", runNATS},
		{"simulate", "send simulated telecom traffic through the gateway (live, or days of history)", runSimulate},
		{"clock", "publish clock.ticked to every partition at each day (or hour) boundary", runClock},
		{"streams", "provision (apply) or inspect the log streams defined in deploy/streams.json", runStreams},
		{"gateway", "serve the ingest gateway: channel systems' HTTP and NATS request-reply doors to the log", runGateway},
		{"keys", "serve the key service (customers' data keys over NATS request-reply)", runKeys},
		{"query", "serve the query API: customer profile, timeline and search, with OpenAPI", runQuery},
		{"redeem", "serve the loyalty redemption API (the only producer of points.redeemed), with OpenAPI", runRedeem},
		{"projector", "fold the log into the read models (timeline, customer 360, loyalty ledger, idempotency index)", runProjector},
		{"churn", "train, evaluate and activate churn scorers (rules or models trained from the log)", runChurn},
		{"notify", "deliver derived signals (SIGNALS) to webhooks, signed, with retries; list, redeliver or discard parked deliveries", runNotify},
		{"bench", "measure throughput and latency on this machine, beside its raw limits (make bench)", runBench},
		{"status", "show the log's streams and every projection target: checkpoints, lag, dead letters, rebuilds", runStatus},
		{"dlq", "dead letters: list, show, redrive (recompute the customer) or discard (recorded in the log)", runDLQ},
		{"history", "a customer's events from the log, for audit (personal fields sealed unless --reveal)", runHistory},
		{"audit", "the access audit log: who read which customer's personal data, when, which fields, masked or clear", runAudit},
		{"erase", "erase a customer's personal data (recorded in the log, key deleted, read models purged), or sweep the retention limits", runErase},
		{"rebuild", "build a new version of a read model from the log beside the serving one, then switch readers (or recompute customers)", runRebuild},
		{"replay", "replay a range of the log into a new version for inspection, or recompute listed customers", runReplay},
		{"loyalty", "the loyalty club's rule versions: list them, activate one from an effective time (an event in the log)", runLoyalty},
		{"verify", "check a read model against the log (customer 360: counts, sequence hashes, spend totals)", runVerify},
		{"backup", "back up the log (stream snapshots) and the state outside it (key store, models, idempotency index, audit, configuration)", runBackup},
		{"restore", "restore a backup into an empty NATS and database, checked against its manifest first; the projector then rebuilds the read models", runRestore},
	}
}

// errUsage marks a command-line mistake: exit code 2.
var errUsage = errors.New("usage")

// defaultGCPercent trades memory for CPU: touchstream's services allocate briskly
// (JSON in, JSON out) and have memory to spare, so the collector runs a quarter as
// often as Go's default. GOGC in the environment overrides it.
const defaultGCPercent = 400

// defaultMemoryShare: without GOMEMLIMIT, the Go heap's soft limit is this fraction
// of the machine's (or container's) memory, which leaves the rest to PostgreSQL, NATS
// and the page cache when they share the machine. A rebuild's windows are sized from
// it (projections.DefaultGatherBytes).
const defaultMemoryShare = 2

func main() {
	env := config.OSEnv()
	if env("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if env("GOMEMLIMIT") == "" {
		// A soft limit keeps the collector's lenience (GOGC above) from growing the heap
		// past the machine: a rebuild holds gigabytes of log in memory (ADR 35).
		if m := projections.MachineMemory(); m > 0 {
			debug.SetMemoryLimit(m / defaultMemoryShare)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], env, os.Stdout)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "touchstream:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env, stdout)
		}
	}
	usage(os.Stderr, cmds)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func usage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "usage: touchstream <command> [flags]   (touchstream <command> --help for its flags)")
	fmt.Fprintln(w)
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.name))
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s%s  %s\n", c.name, strings.Repeat(" ", width-len(c.name)), c.summary)
	}
}

// newFlags returns a flag set whose errors are returned, not printed and exited on.
func newFlags(name string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("touchstream "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}
