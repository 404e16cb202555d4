package notify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PurgeCustomer deletes, inside tx, the parked deliveries of the customer's signals
// (the body's "customer"), for every webhook, and returns how many it deleted. It is
// part of an erasure: a signal about an erased customer is not delivered later. A
// database without the notify schema has none.
func PurgeCustomer(ctx context.Context, tx pgx.Tx, customer string) (int64, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('notify.parked') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("purge parked deliveries of %s: %w", customer, err)
	}
	if !exists {
		return 0, nil // no notifier ever ran here
	}
	// strpos narrows the rows read; the body decides.
	rows, err := tx.Query(ctx, `SELECT webhook, signal_id, body FROM notify.parked WHERE strpos(body, $1) > 0`, customer)
	if err != nil {
		return 0, fmt.Errorf("purge parked deliveries of %s: %w", customer, err)
	}
	var hooks, ids []string
	var hook, id, body string
	_, err = pgx.ForEachRow(rows, []any{&hook, &id, &body}, func() error {
		var s struct {
			Customer string `json:"customer"`
		}
		if json.Unmarshal([]byte(body), &s) == nil && s.Customer == customer {
			hooks, ids = append(hooks, hook), append(ids, id)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge parked deliveries of %s: %w", customer, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `DELETE FROM notify.parked p USING unnest($1::text[], $2::text[]) AS u(w, s)
		WHERE p.webhook = u.w AND p.signal_id = u.s`, hooks, ids)
	if err != nil {
		return 0, fmt.Errorf("purge parked deliveries of %s: %w", customer, err)
	}
	return tag.RowsAffected(), nil
}
