package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

const auditUsage = `usage: touchstream audit access [--customer ID] [--staff ID] [--from T] [--to T] [--limit N] [--json]

Lists the access audit log, newest first: who read which customer's personal data
(masked or in clear), when, which fields, through which route and request. It holds
ids and field names only, never the values. Reads PostgreSQL directly (DATABASE_URL).
`

// runAudit is `touchstream audit access`.
func runAudit(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, auditUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: audit: a command is required (access)", errUsage)
		}
		return nil
	}
	if args[0] != "access" {
		fmt.Fprint(stdout, auditUsage)
		return fmt.Errorf("%w: audit: unknown command %q (access)", errUsage, args[0])
	}
	fs := newFlags("audit access", stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	var f opsFlags
	f.register(fs, env)
	var filter audit.Filter
	var from, to string
	fs.StringVar(&filter.Customer, "customer", "", "only reads of this customer")
	fs.StringVar(&filter.Staff, "staff", "", "only reads by this staff member")
	fs.StringVar(&from, "from", "", "only reads at or after this time (RFC 3339, or a date: 2026-11-01)")
	fs.StringVar(&to, "to", "", "only reads before this time (RFC 3339, or a date)")
	fs.IntVar(&filter.Limit, "limit", 100, "at most this many (1-1000)")
	pos, err := parseWithArgs(fs, args[1:])
	if err != nil {
		return err
	}
	var errs []error
	if len(pos) > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", pos[0]))
	}
	if filter.Customer != "" && !events.ValidCustomerID(filter.Customer) {
		errs = append(errs, fmt.Errorf("--customer %q: a customer id (1-64 of A-Z a-z 0-9 _ -)", filter.Customer))
	}
	if filter.Staff != "" && !access.ValidStaffID(filter.Staff) {
		errs = append(errs, fmt.Errorf("--staff %q: a staff id (1-64 of A-Z a-z 0-9 _ . : -)", filter.Staff))
	}
	if filter.Limit < 1 || filter.Limit > 1000 {
		errs = append(errs, fmt.Errorf("--limit %d: 1 to 1000", filter.Limit))
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"--from", from, &filter.From}, {"--to", to, &filter.To}} {
		if t.v == "" {
			continue
		}
		v, err := parseTime(t.v, time.FixedZone("CST", 8*3600))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: an RFC 3339 time or a date (2026-11-01)", t.name, t.v))
		}
		*t.dst = v
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: audit access: %w", errUsage, err)
	}
	if err := f.common.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	pool, err := pgsetup.Open(ctx, f.common.DatabaseURL, 2, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	items, _, err := audit.List(ctx, pool, filter)
	if err != nil {
		return err
	}
	if f.asJSON {
		if items == nil {
			items = []audit.Entry{}
		}
		return writeJSON(stdout, items)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "AT\tSTAFF\tROLES\tCUSTOMER\tFIELDS\tACCESS\tROUTE\tREQUEST\n")
	for _, e := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", stamp(e.At), e.StaffID, strings.Join(e.Roles, ","), e.Customer,
			strings.Join(e.Fields, ","), e.Access, e.Route, e.RequestID)
	}
	return tw.Flush()
}
