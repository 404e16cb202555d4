package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
)

// CustomerRecomputer is implemented by a projection that can rebuild one customer's
// rows from scratch, in place, in its target. It is the primitive behind
// `rebuild <projection> --customer ID` and behind re-driving a parked event.
//
// RecomputeCustomer receives the customer's events in stream order, every one up to
// the target's checkpoint in the customer's partition (read through the customer index
// and fetched from the log by sequence, never by a scan), and must replace everything
// the target holds for that customer with the fold of exactly those events, inside tx.
// It must not read other customers' rows or other projections' tables, nor the wall
// clock. An empty history means the customer has no event: its rows are deleted.
//
// The history includes events this target once parked: recomputing a customer applies
// them, which is how a parked event is re-driven after a fix (see Recomputer.Redrive).
// Events that never decoded are not in the history. A failure returns an error and
// rolls the whole recompute back; the target keeps its previous rows.
//
// The timeline does not implement it: the timeline is the customer index itself, so a
// recompute would read back exactly the rows it holds. It is rebuilt as a new version.
type CustomerRecomputer interface {
	RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, partition int, history []*Envelope) error
}

// ErrNotRecomputable: the projection does not implement CustomerRecomputer.
var ErrNotRecomputable = errors.New("projection cannot recompute a single customer (rebuild it as a new version)")

// Recomputed reports one target's recompute of a customer.
type Recomputed struct {
	Target    string `json:"target"`
	Customer  string `json:"customer_id"`
	Partition int    `json:"partition"`
	// UpTo is the target's checkpoint in the partition: the history was read up to it.
	UpTo uint64 `json:"up_to_seq"`
	// Events is how many of the customer's events were folded.
	Events int `json:"events"`
	// Redriven are the ids of this target's dead letters for the customer that the
	// recompute applied (their events are in the history): now marked 'redriven'.
	Redriven []int64 `json:"redriven,omitempty"`
}

// Recomputer recomputes customers in place. It reads each customer's events through
// History (a LogHistory over the timeline index).
type Recomputer struct {
	Pool    *pgxpool.Pool
	History History
	Layout  events.Layout
}

// Recompute replaces the rows of one customer in every given target with a fold from
// scratch of the customer's events up to the target's checkpoint, all in ONE
// transaction: either every target is recomputed or none is. Each target's checkpoint
// row of the customer's partition is locked for the duration, so a running projector
// neither folds that partition meanwhile nor overwrites the result with a stale read:
// its next batch waits, then folds onto the recomputed rows.
func (r *Recomputer) Recompute(ctx context.Context, customer string, projs ...Projection) ([]Recomputed, error) {
	if r.Pool == nil {
		return nil, errors.New("recompute: Recomputer.Pool: required")
	}
	tx, err := r.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("recompute customer %s: %w", customer, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	out, err := r.RecomputeTx(ctx, tx, customer, projs...)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("recompute customer %s: commit: %w", customer, err)
	}
	return out, nil
}

// RecomputeTx is Recompute inside the caller's transaction.
func (r *Recomputer) RecomputeTx(ctx context.Context, tx pgx.Tx, customer string, projs ...Projection) ([]Recomputed, error) {
	if !events.ValidCustomerID(customer) {
		return nil, fmt.Errorf("recompute: customer id %q: must be 1-64 characters of A-Z, a-z, 0-9, _ and -", customer)
	}
	if r.History == nil {
		return nil, fmt.Errorf("recompute customer %s: %w", customer, ErrNoHistory)
	}
	if len(projs) == 0 {
		return nil, errors.New("recompute: no projection given")
	}
	part := r.Layout.PartitionOf(customer)
	var out []Recomputed
	for _, p := range projs {
		cr, ok := p.(CustomerRecomputer)
		if !ok {
			return nil, fmt.Errorf("recompute %s: %w", p.Target(), ErrNotRecomputable)
		}
		var upTo int64
		err := tx.QueryRow(ctx, `SELECT seq FROM projections.checkpoints WHERE target = $1 AND partition = $2 FOR UPDATE`,
			p.Target(), int32(part)).Scan(&upTo)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("recompute %s: no checkpoint for partition %d: the target was never prepared", p.Target(), part)
		}
		if err != nil {
			return nil, fmt.Errorf("recompute %s: checkpoint of partition %d: %w", p.Target(), part, err)
		}
		res := Recomputed{Target: p.Target(), Customer: customer, Partition: part, UpTo: uint64(upTo)}
		var history []*Envelope
		if upTo > 0 {
			if history, err = r.History.History(ctx, tx, customer, uint64(upTo)); err != nil {
				return nil, fmt.Errorf("recompute %s customer %s: history up to seq=%d: %w", p.Target(), customer, upTo, err)
			}
		}
		if err := cr.RecomputeCustomer(ctx, tx, customer, part, history); err != nil {
			return nil, fmt.Errorf("recompute %s customer %s: %w", p.Target(), customer, err)
		}
		res.Events = len(history)
		if len(history) > 0 {
			seqs := make([]int64, len(history))
			for i, e := range history {
				seqs[i] = int64(e.Seq)
			}
			rows, err := tx.Query(ctx, `UPDATE projections.dead_letters SET status = 'redriven', resolved_at = now()
				WHERE target = $1 AND customer_id = $2 AND status = 'parked' AND stream = $3 AND seq = ANY($4)
				RETURNING id`, p.Target(), customer, history[0].Stream, seqs)
			if err != nil {
				return nil, fmt.Errorf("recompute %s: resolve dead letters: %w", p.Target(), err)
			}
			if res.Redriven, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return nil, fmt.Errorf("recompute %s: resolve dead letters: %w", p.Target(), err)
			}
			if len(res.Redriven) == 0 {
				res.Redriven = nil
			}
		}
		out = append(out, res)
	}
	return out, nil
}
