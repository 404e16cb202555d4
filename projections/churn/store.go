package churn

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/valuetier"
)

// retract handles an event.retracted of the customer: a feature fold cannot be undone
// incrementally, so the customer's features are folded again from its events in the
// log without the retracted ones (snapshots of the months crossed are written again);
// the alert lifecycle is kept (alerts already raised are facts) and the customer is
// scored again.
func (p *Projection) retract(ctx context.Context, bc *batchCtx, c string, st *state, e *projections.Envelope, r *events.EventRetracted) error {
	history, err := bc.b.History(ctx, c, e.Seq)
	if err != nil {
		return fmt.Errorf("churn: recompute %s after seq=%d: %w", c, e.Seq, err)
	}
	if err := p.refold(st, history); err != nil {
		return err
	}
	return p.score(ctx, bc, c, st, e)
}

// refold replaces the state's features, region and segment with a fold from scratch
// of history (the customer's events in stream order), skipping retracted events, and
// collects the monthly snapshots crossed. The lifecycle is kept, but a termination
// that was retracted no longer counts.
func (p *Projection) refold(st *state, history []*projections.Envelope) error {
	retracted := map[events.EventRef]bool{}
	payloads := make([]any, len(history))
	for i, h := range history {
		if !decoded[h.Type] {
			continue
		}
		payload, err := events.Decode(&h.Event)
		if err != nil {
			continue // parked when it was first met; it never counted
		}
		payloads[i] = payload
		if r, ok := payload.(*events.EventRetracted); ok {
			retracted[r.Target] = true
		}
	}
	keep := st.r.L
	st.r = record{L: keep, Logged: st.r.Logged}
	st.snaps = nil
	for i, h := range history {
		if retracted[h.Ref()] || h.Type == events.TypeEventRetracted {
			continue
		}
		p.snapshotMonths(st, h.Time)
		if err := st.r.F.Apply(features.FromEnvelope(&h.Event, payloads[i])); err != nil {
			continue // parked when it was first met
		}
		switch d := payloads[i].(type) {
		case *events.CustomerRegistered:
			st.r.Region, st.r.Segment = d.Region, d.Segment
		case *events.CustomerUpdated:
			if d.Region != "" {
				st.r.Region = d.Region
			}
			if d.Segment != "" {
				st.r.Segment = d.Segment
			}
		}
	}
	st.r.L.Terminated = !st.r.F.Terminated.Time.IsZero()
	st.dirty = true
	return nil
}

// RecomputeCustomer replaces one customer's features with a fold from scratch of its
// events (projections.CustomerRecomputer): rebuild --customer and dead-letter
// redrive. The alert lifecycle already stored is kept and no signal is sent.
func (p *Projection) RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, partition int, history []*projections.Envelope) error {
	custs, err := p.load(ctx, tx, []string{customer}, nil)
	if err != nil {
		return err
	}
	st := custs[customer]
	if st == nil {
		st = &state{partition: partition}
		custs[customer] = st
	}
	if len(history) == 0 {
		_, err := tx.Exec(ctx, `DELETE FROM `+p.q+`.customers WHERE customer_id = $1`, customer)
		return err
	}
	if err := p.refold(st, history); err != nil {
		return err
	}
	last := history[len(history)-1]
	st.seq, st.events, st.partition = last.Seq, int64(len(history)), partition
	bc := &batchCtx{tx: tx, alert: map[string]*Alert{}}
	if bc.books, err = p.loadBooks(ctx, tx, map[int]bool{partition: true}); err != nil {
		return err
	}
	if err := p.score(ctx, bc, customer, st, last); err != nil {
		return err
	}
	return p.store(ctx, tx, custs, nil, bc.alert)
}

var _ projections.CustomerRecomputer = (*Projection)(nil)

// load reads the batch's customers and, for partitions with a clock tick in the batch,
// every live customer of those partitions.
func (p *Projection) load(ctx context.Context, tx pgx.Tx, customers []string, tickParts map[int]bool) (map[string]*state, error) {
	out := make(map[string]*state, len(customers))
	if customers == nil {
		customers = []string{} // = ANY(NULL) would be NULL, not false
	}
	rows, err := tx.Query(ctx, `SELECT customer_id, partition, seq, events, doc FROM `+p.q+`.customers WHERE customer_id = ANY($1)`, customers)
	if err != nil {
		return nil, fmt.Errorf("churn: load customers: %w", err)
	}
	if err := scanStates(rows, out); err != nil {
		return nil, err
	}
	if len(tickParts) > 0 {
		ps := make([]int32, 0, len(tickParts))
		for part := range tickParts {
			ps = append(ps, int32(part))
		}
		rows, err := tx.Query(ctx, `SELECT customer_id, partition, seq, events, doc FROM `+p.q+
			`.customers WHERE partition = ANY($1) AND terminated_at IS NULL AND NOT (customer_id = ANY($2))`, ps, customers)
		if err != nil {
			return nil, fmt.Errorf("churn: load live customers: %w", err)
		}
		if err := scanStates(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func scanStates(rows pgx.Rows, out map[string]*state) error {
	var c string
	var part int32
	var seq, evs int64
	var doc []byte
	_, err := pgx.ForEachRow(rows, []any{&c, &part, &seq, &evs, &doc}, func() error {
		st := &state{partition: int(part), seq: uint64(seq), events: evs}
		if err := json.Unmarshal(doc, &st.r); err != nil {
			return fmt.Errorf("customer %s: %w", c, err)
		}
		out[c] = st
		return nil
	})
	if err != nil {
		return fmt.Errorf("churn: load customers: %w", err)
	}
	return nil
}

// store writes the changed customers (one upsert), their score history and snapshots
// (one insert each), the alerts changed (one upsert) and the activations met.
func (p *Projection) store(ctx context.Context, tx pgx.Tx, custs map[string]*state, acts []struct {
	part int
	a    activation
}, alerts map[string]*Alert) error {
	var (
		ids, regions, tiers, models []string
		parts                       []int32
		seqs, evs, values           []int64
		nows                        []time.Time
		scores                      []*float64
		scoredAt, terminated        []*time.Time
		alertIDs                    []*string
		docs                        [][]byte
		hC, hModel                  []string
		hAt                         []time.Time
		hSeq                        []int64
		hScore                      []float64
		sC                          []string
		sMonth                      []int32
		sAsOf                       []time.Time
		sVals                       []string
	)
	for c, st := range custs {
		if !st.dirty {
			continue
		}
		doc, err := json.Marshal(&st.r)
		if err != nil {
			return fmt.Errorf("churn: encode customer %s: %w", c, err)
		}
		ids, parts, seqs, evs, docs = append(ids, c), append(parts, int32(st.partition)), append(seqs, int64(st.seq)), append(evs, st.events), append(docs, doc)
		nows, regions = append(nows, st.r.F.Now), append(regions, st.r.Region)
		if !st.valued {
			st.value, st.valued = valueFen(st.r.F.Snapshot(st.r.F.Now)), true
		}
		v := st.value
		values, tiers = append(values, v), append(tiers, p.tier(st))
		var sc *float64
		var sat *time.Time
		model := ""
		if st.r.Score != nil {
			prob, at := st.r.Score.Probability, st.r.ScoredAt
			sc, sat, model = &prob, &at, st.r.Score.Version
		}
		scores, scoredAt, models = append(scores, sc), append(scoredAt, sat), append(models, model)
		var term *time.Time
		if st.r.L.Terminated {
			at := st.r.F.Terminated.Time
			term = &at
		}
		terminated = append(terminated, term)
		var aid *string
		if st.r.L.open() {
			id := st.r.L.Alert.ID
			aid = &id
		}
		alertIDs = append(alertIDs, aid)
		for _, h := range st.history {
			hC, hAt, hSeq, hScore, hModel = append(hC, c), append(hAt, h.at), append(hSeq, int64(h.seq)), append(hScore, h.score), append(hModel, h.model)
		}
		for _, s := range st.snaps {
			b, _ := json.Marshal(s.vals)
			sC, sMonth, sAsOf, sVals = append(sC, c), append(sMonth, int32(s.month)), append(sAsOf, s.asOf), append(sVals, "{"+string(b[1:len(b)-1])+"}")
		}
	}
	if len(ids) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+p.q+`.customers AS m (customer_id, partition, seq, events, now_at, region, tier, value_fen, score, model, scored_at, alert_id, terminated_at, doc)
			SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[], $8::bigint[], $9::float8[], $10::text[], $11::timestamptz[], $12::text[], $13::timestamptz[], $14::bytea[])
			ON CONFLICT (customer_id) DO UPDATE SET partition = excluded.partition, seq = excluded.seq, events = excluded.events, now_at = excluded.now_at,
				region = excluded.region, tier = excluded.tier, value_fen = excluded.value_fen, score = excluded.score, model = excluded.model,
				scored_at = excluded.scored_at, alert_id = excluded.alert_id, terminated_at = excluded.terminated_at, doc = excluded.doc`,
			ids, parts, seqs, evs, nows, regions, tiers, values, scores, models, scoredAt, alertIDs, terminated, docs); err != nil {
			return fmt.Errorf("churn: store customers: %w", err)
		}
	}
	if len(hC) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+p.q+`.scores (customer_id, at, seq, score, model)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::float8[], $5::text[])
			ON CONFLICT (customer_id, seq) DO UPDATE SET at = excluded.at, score = excluded.score, model = excluded.model`,
			hC, hAt, hSeq, hScore, hModel); err != nil {
			return fmt.Errorf("churn: store score history: %w", err)
		}
	}
	if len(sC) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+p.q+`.snapshots (customer_id, month, as_of, vals)
			SELECT c, m, a, v::float8[] FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[]) AS u(c, m, a, v)
			ON CONFLICT (customer_id, month) DO UPDATE SET as_of = excluded.as_of, vals = excluded.vals`,
			sC, sMonth, sAsOf, sVals); err != nil {
			return fmt.Errorf("churn: store snapshots: %w", err)
		}
	}
	if err := p.storeAlerts(ctx, tx, custs, alerts); err != nil {
		return err
	}
	if len(acts) > 0 {
		var ap []int32
		var as []int64
		var aid, amodel []string
		var aeff []time.Time
		for _, a := range acts {
			ap, as, aid = append(ap, int32(a.part)), append(as, int64(a.a.seq)), append(aid, a.a.id)
			amodel, aeff = append(amodel, a.a.model), append(aeff, a.a.effective)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+p.q+`.activations (partition, seq, activation_id, model, effective_at)
			SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) ON CONFLICT DO NOTHING`,
			ap, as, aid, amodel, aeff); err != nil {
			return fmt.Errorf("churn: store activations: %w", err)
		}
	}
	return nil
}

func (p *Projection) storeAlerts(ctx context.Context, tx pgx.Tx, custs map[string]*state, alerts map[string]*Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	var (
		ids, cs, states, outcomes, models []string
		parts                             []int32
		scores, prios                     []float64
		values                            []int64
		raised, updated                   []time.Time
		closed                            []*time.Time
		docs                              [][]byte
	)
	for id, a := range alerts {
		doc, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("churn: encode alert %s: %w", id, err)
		}
		part := 0
		if st := custs[a.Customer]; st != nil {
			part = st.partition
		}
		ids, cs, states, outcomes, models = append(ids, id), append(cs, a.Customer), append(states, a.State), append(outcomes, a.Outcome), append(models, a.Model)
		parts, scores, values = append(parts, int32(part)), append(scores, a.Score), append(values, a.ValueFen)
		prios = append(prios, a.Score*float64(a.ValueFen)/100)
		raised, updated = append(raised, a.RaisedAt), append(updated, a.UpdatedAt)
		var cl *time.Time
		if !a.ClosedAt.IsZero() {
			at := a.ClosedAt
			cl = &at
		}
		closed, docs = append(closed, cl), append(docs, doc)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+p.q+`.alerts (alert_id, customer_id, partition, state, outcome, score, value_fen, priority, model, raised_at, updated_at, closed_at, doc)
		SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::float8[], $7::bigint[], $8::float8[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::jsonb[])
		ON CONFLICT (alert_id) DO UPDATE SET state = excluded.state, outcome = excluded.outcome, updated_at = excluded.updated_at,
			closed_at = excluded.closed_at, doc = excluded.doc`,
		ids, cs, parts, states, outcomes, scores, values, prios, models, raised, updated, closed, docs); err != nil {
		return fmt.Errorf("churn: store alerts: %w", err)
	}
	return nil
}

// tier is the customer's value tier from the monthly spend its feature state holds
// (the last DaysKept days, bucketed by local month).
func (p *Projection) tier(st *state) string {
	spend := valuetier.Spend{}
	for _, d := range st.r.F.Days {
		spend[p.opts.Tiers.MonthOf(features.DayStart(d.Day))] += d.SpendFen
	}
	if st.r.F.Now.IsZero() {
		return ""
	}
	return p.opts.Tiers.Tier(spend, p.opts.Tiers.MonthOf(st.r.F.Now))
}
