package timeline

import (
	"context"
	"fmt"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
)

var _ projections.Purger = (*Projection)(nil)

// Purge implements projections.Purger. The fold never writes a personal field (rows
// keep payloads without them), so there is normally nothing to remove: Purge checks
// every row of the customer and drops any sealed value a payload still holds (a row
// written by an older fold, or by hand), returning the rows it rewrote. The rows
// themselves stay: they are the customer's index into the log, ids and sequences only.
// A fold of customer.erased needs nothing more than its own row.
func (p *Projection) Purge(ctx context.Context, tx pgx.Tx, customer string) (int64, error) {
	rows, err := tx.Query(ctx, `SELECT event_time, seq, data FROM `+p.table+` WHERE customer_id = $1`, customer)
	if err != nil {
		return 0, fmt.Errorf("timeline purge %s: %w", customer, err)
	}
	type fix struct {
		at   any
		seq  int64
		data []byte
	}
	var fixes []fix
	var f fix
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&f.at, &f.seq, &raw}, func() error {
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("row seq=%d: %w", f.seq, err)
		}
		if clean, changed := withoutSealed(doc); changed {
			b, err := json.Marshal(clean)
			if err != nil {
				return err
			}
			fixes = append(fixes, fix{at: f.at, seq: f.seq, data: b})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("timeline purge %s: %w", customer, err)
	}
	for _, x := range fixes {
		if _, err := tx.Exec(ctx, `UPDATE `+p.table+` SET data = $4 WHERE customer_id = $1 AND event_time = $2 AND seq = $3`,
			customer, x.at, x.seq, x.data); err != nil {
			return 0, fmt.Errorf("timeline purge %s seq=%d: %w", customer, x.seq, err)
		}
	}
	return int64(len(fixes)), nil
}

// withoutSealed removes every sealed value (an object with alg, kid, n and ct) from a
// decoded JSON document.
func withoutSealed(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		changed := false
		for k, child := range x {
			if isSealed(child) {
				delete(x, k)
				changed = true
				continue
			}
			if c, ch := withoutSealed(child); ch {
				x[k], changed = c, true
			}
		}
		return x, changed
	case []any:
		out := x[:0]
		changed := false
		for _, child := range x {
			if isSealed(child) {
				changed = true
				continue
			}
			c, ch := withoutSealed(child)
			changed = changed || ch
			out = append(out, c)
		}
		return out, changed
	}
	return v, false
}

func isSealed(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, k := range []string{"alg", "kid", "n", "ct"} {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
