package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Entry is one access record as the audit query shows it.
type Entry struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	StaffID  string    `json:"staff_id"`
	Roles    []string  `json:"roles"`
	Customer string    `json:"customer_id"`
	Fields   []string  `json:"fields"`
	// Access is "full" (in clear) or "masked", as the query API names it.
	Access    string `json:"access"`
	Route     string `json:"route"`
	RequestID string `json:"request_id"`
}

// Filter selects a page of records, newest first. Every field is optional.
type Filter struct {
	Customer string
	Staff    string
	From, To time.Time // [From, To) on the record's time
	Cursor   string    // a page's Next
	Limit    int       // 1-1000, default 100
}

// ErrBadCursor: the cursor was not issued by List.
var ErrBadCursor = errors.New("malformed cursor")

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, ErrBadCursor
	}
	rest, ok := strings.CutPrefix(string(b), "a")
	id, err := strconv.ParseInt(rest, 10, 64)
	if !ok || err != nil || id < 1 {
		return 0, ErrBadCursor
	}
	return id, nil
}

// Querier reads the log (a pgx pool).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// List returns a page of records matching f, newest first, and the cursor of the next
// page ("" on the last).
func List(ctx context.Context, db Querier, f Filter) ([]Entry, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Customer != "" {
		conds = append(conds, "customer_id = "+arg(f.Customer))
	}
	if f.Staff != "" {
		conds = append(conds, "staff_id = "+arg(f.Staff))
	}
	if !f.From.IsZero() {
		conds = append(conds, "at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "at < "+arg(f.To))
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		conds = append(conds, "id < "+arg(after))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := db.Query(ctx, `SELECT id, at, staff_id, roles, customer_id, fields, clear, route, request_id
		FROM access_audit.reads`+where+` ORDER BY id DESC LIMIT `+arg(f.Limit+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list access records: %w", err)
	}
	var out []Entry
	var e Entry
	var clear bool
	if _, err := pgx.ForEachRow(rows, []any{&e.ID, &e.At, &e.StaffID, &e.Roles, &e.Customer, &e.Fields, &clear, &e.Route, &e.RequestID}, func() error {
		e.Access = "masked"
		if clear {
			e.Access = "full"
		}
		e.At = e.At.UTC()
		out = append(out, e)
		e.Roles, e.Fields = nil, nil // the next row scans into fresh slices
		return nil
	}); err != nil {
		return nil, "", fmt.Errorf("list access records: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = encodeCursor(out[len(out)-1].ID)
	}
	return out, next, nil
}
