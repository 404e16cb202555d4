package servicelevel

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
)

// loadCalls reads the calls the batch names (to ignore one seen already, or to
// retract one).
func (f *fold) loadCalls(ctx context.Context, tx pgx.Tx, refs []events.EventRef) error {
	if len(refs) == 0 {
		return nil
	}
	srcs, ids := splitRefs(refs)
	rows, err := tx.Query(ctx, `SELECT event_source, event_id, customer_id, queue, hour, inbound, answered, within_20s, wait_seconds, handling_seconds, retracted
		FROM `+f.p.q+`.calls WHERE (event_source, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, srcs, ids)
	if err != nil {
		return fmt.Errorf("servicelevel: load calls: %w", err)
	}
	var cl call
	var wait, handling int32
	_, err = pgx.ForEachRow(rows, []any{&cl.ref.Source, &cl.ref.ID, &cl.customer, &cl.queue, &cl.hour, &cl.inbound, &cl.answered, &cl.within, &wait, &handling, &cl.retracted}, func() error {
		c := cl
		c.wait, c.handling = int(wait), int(handling)
		f.calls[c.ref] = &c
		return nil
	})
	if err != nil {
		return fmt.Errorf("servicelevel: load calls: %w", err)
	}
	return nil
}

// loadComplaints reads the complaints the batch names, those whose opening or
// resolution it retracts, and the open ones whose deadline its partitions' time may
// pass.
func (f *fold) loadComplaints(ctx context.Context, tx pgx.Tx, keys []complaintKey, retracted []events.EventRef, maxTime map[int]time.Time) error {
	cust, cids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		cust[i], cids[i] = k.customer, k.id
	}
	srcs, ids := splitRefs(retracted)
	parts, times := make([]int32, 0, len(maxTime)), make([]time.Time, 0, len(maxTime))
	for p, t := range maxTime {
		parts, times = append(parts, int32(p)), append(times, t)
	}
	const cols = `c.customer_id, c.complaint_id, c.partition, c.opened_at, c.promised_by, c.resolved_at, c.enterprise, c.breached, c.breached_at,
		coalesce(c.breach_reason, ''), coalesce(c.opened_source, ''), coalesce(c.opened_id, ''), coalesce(c.resolved_source, ''), coalesce(c.resolved_id, '')`
	t := f.p.q + `.complaints c`
	rows, err := tx.Query(ctx, `
		SELECT `+cols+` FROM `+t+` WHERE (c.customer_id, c.complaint_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		UNION SELECT `+cols+` FROM `+t+` WHERE (c.opened_source, c.opened_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
		UNION SELECT `+cols+` FROM `+t+` WHERE (c.resolved_source, c.resolved_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
		UNION SELECT `+cols+` FROM unnest($5::int[], $6::timestamptz[]) AS m(partition, now) JOIN `+t+`
			ON c.partition = m.partition AND c.promised_by < m.now
			WHERE c.resolved_at IS NULL AND NOT c.breached AND c.promised_by IS NOT NULL`,
		cust, cids, srcs, ids, parts, times)
	if err != nil {
		return fmt.Errorf("servicelevel: load complaints: %w", err)
	}
	var (
		k                                       complaintKey
		part                                    int32
		openedAt, promisedBy, resolved, breachT *time.Time
		ent, breached                           bool
		reason, oSrc, oi, rSrc, ri              string
	)
	_, err = pgx.ForEachRow(rows, []any{&k.customer, &k.id, &part, &openedAt, &promisedBy, &resolved, &ent, &breached, &breachT, &reason, &oSrc, &oi, &rSrc, &ri}, func() error {
		c := &complaint{complaintKey: k, partition: int(part), openedAt: val(openedAt), promisedBy: val(promisedBy), resolvedAt: val(resolved),
			enterprise: ent, isBreached: breached, breached: val(breachT), reason: reason,
			opened: events.EventRef{Source: oSrc, ID: oi}, resolved: events.EventRef{Source: rSrc, ID: ri}}
		f.complaints[k] = c
		if oi != "" {
			f.refs[c.opened] = k
		}
		if ri != "" {
			f.refs[c.resolved] = k
		}
		f.watch(c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("servicelevel: load complaints: %w", err)
	}
	return nil
}

func val(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// loadEnterprise reads which of the customers are enterprise customers.
func (f *fold) loadEnterprise(ctx context.Context, tx pgx.Tx, customers map[string]bool) error {
	if len(customers) == 0 {
		return nil
	}
	ids := make([]string, 0, len(customers))
	for c := range customers {
		ids = append(ids, c)
	}
	rows, err := tx.Query(ctx, `SELECT customer_id FROM `+f.p.q+`.customers WHERE customer_id = ANY($1) AND enterprise`, ids)
	if err != nil {
		return fmt.Errorf("servicelevel: load customers: %w", err)
	}
	var c string
	if _, err := pgx.ForEachRow(rows, []any{&c}, func() error { f.enterprise[c] = true; return nil }); err != nil {
		return fmt.Errorf("servicelevel: load customers: %w", err)
	}
	return nil
}

func splitRefs(refs []events.EventRef) (srcs, ids []string) {
	srcs, ids = make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		srcs[i], ids[i] = r.Source, r.ID
	}
	return srcs, ids
}

// store writes the batch: one statement per table and kind of change.
func (f *fold) store(ctx context.Context, tx pgx.Tx) error {
	q := f.p.q
	// Calls: the new ones (retracted already when the batch retracted them too), and
	// the older ones the batch retracted.
	var (
		nSrc, nID, nCust, nQueue []string
		nHour                    []time.Time
		nIn, nAns, nWithin, nRet []bool
		nWait, nHandling         []int32
		rSrc, rID                []string
	)
	for _, cl := range f.calls {
		switch {
		case cl.isNew:
			nSrc, nID, nCust, nQueue = append(nSrc, cl.ref.Source), append(nID, cl.ref.ID), append(nCust, cl.customer), append(nQueue, cl.queue)
			nHour, nIn, nAns, nWithin = append(nHour, cl.hour), append(nIn, cl.inbound), append(nAns, cl.answered), append(nWithin, cl.within)
			nWait, nHandling, nRet = append(nWait, int32(cl.wait)), append(nHandling, int32(cl.handling)), append(nRet, cl.retracted)
		case cl.dirty:
			rSrc, rID = append(rSrc, cl.ref.Source), append(rID, cl.ref.ID)
		}
	}
	if len(nSrc) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.calls (event_source, event_id, customer_id, queue, hour, inbound, answered, within_20s, wait_seconds, handling_seconds, retracted)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bool[], $7::bool[], $8::bool[], $9::int[], $10::int[], $11::bool[])`,
			nSrc, nID, nCust, nQueue, nHour, nIn, nAns, nWithin, nWait, nHandling, nRet); err != nil {
			return fmt.Errorf("servicelevel: store calls: %w", err)
		}
	}
	if len(rSrc) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE `+q+`.calls c SET retracted = true FROM unnest($1::text[], $2::text[]) AS r(s, i)
			WHERE c.event_source = r.s AND c.event_id = r.i`, rSrc, rID); err != nil {
			return fmt.Errorf("servicelevel: retract calls: %w", err)
		}
	}
	// Hourly counters: every (queue, hour) the batch touched, even when its changes
	// cancel out, so that the rows do not depend on batch boundaries.
	if len(f.hourly) > 0 {
		var (
			queues                                            []string
			hours                                             []time.Time
			off, ans, within, aband, wait, handling, outbound []int64
		)
		// In key order: workers of other partitions share these rows, and two
		// transactions locking them in different orders deadlock.
		keys := slices.SortedFunc(maps.Keys(f.hourly), func(a, b hourKey) int {
			return cmp.Or(strings.Compare(a.queue, b.queue), cmp.Compare(a.hour, b.hour))
		})
		for _, k := range keys {
			c := f.hourly[k]
			queues, hours = append(queues, k.queue), append(hours, time.Unix(k.hour, 0))
			off, ans, within, aband = append(off, c.offered), append(ans, c.answered), append(within, c.within), append(aband, c.abandoned)
			wait, handling, outbound = append(wait, c.wait), append(handling, c.handling), append(outbound, c.outbound)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.calls_hourly AS t (queue, hour, offered, answered, within_20s, abandoned, wait_seconds, handling_seconds, outbound)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
			ON CONFLICT (queue, hour) DO UPDATE SET offered = t.offered + excluded.offered, answered = t.answered + excluded.answered,
				within_20s = t.within_20s + excluded.within_20s, abandoned = t.abandoned + excluded.abandoned,
				wait_seconds = t.wait_seconds + excluded.wait_seconds, handling_seconds = t.handling_seconds + excluded.handling_seconds,
				outbound = t.outbound + excluded.outbound`,
			queues, hours, off, ans, within, aband, wait, handling, outbound); err != nil {
			return fmt.Errorf("servicelevel: store hourly counters: %w", err)
		}
	}
	if err := f.storeComplaints(ctx, tx); err != nil {
		return err
	}
	// Customers: events folded, enterprise status.
	if len(f.custOrder) > 0 {
		ents := make([]bool, len(f.custOrder))
		counts := make([]int64, len(f.custOrder))
		for i, c := range f.custOrder {
			ents[i], counts[i] = f.enterprise[c], f.evCount[c]
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.customers AS t (customer_id, enterprise, events)
			SELECT * FROM unnest($1::text[], $2::bool[], $3::bigint[])
			ON CONFLICT (customer_id) DO UPDATE SET enterprise = excluded.enterprise, events = t.events + excluded.events`,
			f.custOrder, ents, counts); err != nil {
			return fmt.Errorf("servicelevel: store customers: %w", err)
		}
	}
	return nil
}

func (f *fold) storeComplaints(ctx context.Context, tx pgx.Tx) error {
	q := f.p.q
	var (
		dCust, dID                         []string
		cust, ids, reasons, os, oi, rs, ri []*string
		parts                              []int32
		opened, promised, resolved, brAt   []*time.Time
		ents, brs                          []bool
	)
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	for _, c := range f.complaints {
		if !c.dirty {
			continue
		}
		if c.deleted {
			dCust, dID = append(dCust, c.customer), append(dID, c.id)
			continue
		}
		cust, ids, parts = append(cust, str(c.customer)), append(ids, str(c.id)), append(parts, int32(c.partition))
		opened, promised, resolved = append(opened, ptr(c.openedAt)), append(promised, ptr(c.promisedBy)), append(resolved, ptr(c.resolvedAt))
		ents, brs, brAt, reasons = append(ents, c.enterprise), append(brs, c.isBreached), append(brAt, ptr(c.breached)), append(reasons, str(c.reason))
		os, oi = append(os, str(c.opened.Source)), append(oi, str(c.opened.ID))
		rs, ri = append(rs, str(c.resolved.Source)), append(ri, str(c.resolved.ID))
	}
	if len(dCust) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM `+q+`.complaints c USING unnest($1::text[], $2::text[]) AS d(customer_id, complaint_id)
			WHERE c.customer_id = d.customer_id AND c.complaint_id = d.complaint_id`, dCust, dID); err != nil {
			return fmt.Errorf("servicelevel: delete complaints: %w", err)
		}
	}
	if len(cust) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.complaints AS t (customer_id, complaint_id, partition, opened_at, promised_by, resolved_at,
				enterprise, breached, breached_at, breach_reason, opened_source, opened_id, resolved_source, resolved_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
				$7::bool[], $8::bool[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
			ON CONFLICT (customer_id, complaint_id) DO UPDATE SET partition = excluded.partition, opened_at = excluded.opened_at,
				promised_by = excluded.promised_by, resolved_at = excluded.resolved_at, enterprise = excluded.enterprise,
				breached = excluded.breached, breached_at = excluded.breached_at, breach_reason = excluded.breach_reason,
				opened_source = excluded.opened_source, opened_id = excluded.opened_id,
				resolved_source = excluded.resolved_source, resolved_id = excluded.resolved_id`,
			cust, ids, parts, opened, promised, resolved, ents, brs, brAt, reasons, os, oi, rs, ri); err != nil {
			return fmt.Errorf("servicelevel: store complaints: %w", err)
		}
	}
	return nil
}
