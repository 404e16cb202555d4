package customer360

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	json "github.com/goccy/go-json"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
)

// ErrNotFound: no profile for that customer.
var ErrNotFound = errors.New("customer not found")

// Get reads one profile from a target.
func Get(ctx context.Context, q projections.Querier, target, customer string) (*Profile, error) {
	var raw []byte
	err := q.QueryRow(ctx, `SELECT doc FROM `+pgx.Identifier{target, "profiles"}.Sanitize()+` WHERE customer_id = $1`, customer).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("customer360 get: %w", err)
	}
	var p Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("customer360 get: %w", err)
	}
	return &p, nil
}

// Filter selects profiles. Empty fields do not filter.
type Filter struct {
	PhoneHash  []byte // from PhoneHash(key, number)
	CustomerID string // exact id, or a prefix ending in "*"
	Tier       string
	Lifecycle  string
	Region     string
	Segment    string
	Cursor     string // from a previous page
	Limit      int    // 1-500, default 50
}

// Summary is a profile as listed by a search.
type Summary struct {
	CustomerID    string `json:"customer_id"`
	Tier          string `json:"tier"`
	Lifecycle     string `json:"lifecycle"`
	Region        string `json:"region"`
	Segment       string `json:"segment"`
	CustomerType  string `json:"customer_type"`
	Spend3MFen    int64  `json:"spend_3m_fen"`
	EventsTotal   int64  `json:"events_total"`
	LastEventTime string `json:"last_event_time"`
	Partition     int    `json:"partition"`
	// Sealed name and phone, for callers that show them (masked or in full).
	Name  *events.Sealed `json:"-"`
	Phone *events.Sealed `json:"-"`
}

// ErrBadCursor: the cursor was not issued by Search.
var ErrBadCursor = errors.New("malformed cursor")

// Search lists profiles in customer id order and returns the next page's cursor ("" at
// the end).
func Search(ctx context.Context, q projections.Querier, target string, f Filter) ([]Summary, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	var args []any
	var where []string
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.PhoneHash != nil {
		add("phone_hash = ?", f.PhoneHash)
	}
	if id, prefix := strings.CutSuffix(f.CustomerID, "*"); prefix && id != "" {
		add("customer_id LIKE ?", likeEscape(id)+"%")
	} else if f.CustomerID != "" {
		add("customer_id = ?", f.CustomerID)
	}
	if f.Tier != "" {
		add("tier = ?", f.Tier)
	}
	if f.Lifecycle != "" {
		add("lifecycle = ?", f.Lifecycle)
	}
	if f.Region != "" {
		add("region = ?", f.Region)
	}
	if f.Segment != "" {
		add("segment = ?", f.Segment)
	}
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(b) == 0 {
			return nil, "", ErrBadCursor
		}
		add("customer_id > ?", string(b))
	}
	sql := `SELECT customer_id, tier, lifecycle, region, segment, customer_type, spend_3m_fen, events_total,
			to_char(last_event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), partition,
			doc
		FROM ` + pgx.Identifier{target, "profiles"}.Sanitize()
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	sql += " ORDER BY customer_id LIMIT $" + strconv.Itoa(len(args))
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("customer360 search: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Summary, error) {
		var s Summary
		var part int32
		var doc []byte
		err := r.Scan(&s.CustomerID, &s.Tier, &s.Lifecycle, &s.Region, &s.Segment, &s.CustomerType, &s.Spend3MFen,
			&s.EventsTotal, &s.LastEventTime, &part, &doc)
		if err != nil {
			return s, err
		}
		s.Partition = int(part)
		var contact struct {
			Name  *events.Sealed `json:"name"`
			Phone *events.Sealed `json:"phone"`
		}
		if err := json.Unmarshal(doc, &contact); err != nil {
			return s, fmt.Errorf("profile of %s: %w", s.CustomerID, err)
		}
		s.Name, s.Phone = contact.Name, contact.Phone
		return s, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("customer360 search: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].CustomerID))
	}
	return out, next, nil
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Totals are the values of a profile that verification recomputes from the log: the
// count and sequence hash of the events it reflects, and its money totals.
type Totals struct {
	CustomerID       string
	EventsTotal      int64
	SeqHash          int64
	RechargeTotalFen int64
	LifetimeSpendFen int64
}

// ScanTotals calls fn with the totals of every profile of a partition, in customer id
// order, with one query. fn's error stops the scan and is returned.
func ScanTotals(ctx context.Context, q projections.Querier, target string, partition int, fn func(Totals) error) error {
	rows, err := q.Query(ctx, `SELECT customer_id, events_total, seq_hash, recharge_total_fen, lifetime_spend_fen
		FROM `+pgx.Identifier{target, "profiles"}.Sanitize()+` WHERE partition = $1 ORDER BY customer_id`, int32(partition))
	if err != nil {
		return fmt.Errorf("customer360 totals of partition %d: %w", partition, err)
	}
	defer rows.Close()
	var t Totals
	for rows.Next() {
		if err := rows.Scan(&t.CustomerID, &t.EventsTotal, &t.SeqHash, &t.RechargeTotalFen, &t.LifetimeSpendFen); err != nil {
			return fmt.Errorf("customer360 totals of partition %d: %w", partition, err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("customer360 totals of partition %d: %w", partition, err)
	}
	return nil
}
