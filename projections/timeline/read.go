package timeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
)

// Entry is one event on a customer's timeline.
type Entry struct {
	Seq              uint64          `json:"seq"`
	Stream           string          `json:"stream"`
	Time             time.Time       `json:"time"`
	StoredAt         time.Time       `json:"stored_at"`
	Type             string          `json:"type"`
	Source           string          `json:"source"`
	EventID          string          `json:"id"`
	Data             json.RawMessage `json:"data"`
	RetractedBy      *uint64         `json:"retracted_by,omitempty"`
	RetractionReason string          `json:"retraction_reason,omitempty"`
}

// Query selects a page of a customer's timeline, newest first (by event time, then
// stream sequence).
type Query struct {
	Customer string
	Types    []string  // any of these types; all when empty
	Sources  []string  // any of these sources (channels); all when empty
	From, To time.Time // event time range [From, To); open when zero
	Cursor   string    // from a previous page's Next
	Limit    int       // 1-500, default 50
}

// ErrBadCursor: the cursor was not issued by Read.
var ErrBadCursor = errors.New("malformed cursor")

// Read returns a page and the cursor of the next one ("" at the end).
func Read(ctx context.Context, q projections.Querier, target string, query Query) ([]Entry, string, error) {
	limit := query.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	args := []any{query.Customer}
	where := []string{"customer_id = $1"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if len(query.Types) > 0 {
		add("type = ANY(?)", query.Types)
	}
	if len(query.Sources) > 0 {
		add("source = ANY(?)", query.Sources)
	}
	if !query.From.IsZero() {
		add("event_time >= ?", query.From)
	}
	if !query.To.IsZero() {
		add("event_time < ?", query.To)
	}
	if query.Cursor != "" {
		t, seq, err := decodeCursor(query.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, t, int64(seq))
		where = append(where, fmt.Sprintf("(event_time, seq) < ($%d, $%d)", len(args)-1, len(args)))
	}
	args = append(args, limit+1)
	sql := `SELECT seq, stream, event_time, stored_at, type, source, event_id, data, retracted_by, coalesce(retraction_reason, '')
		FROM ` + pgx.Identifier{target, "events"}.Sanitize() + ` WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY event_time DESC, seq DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("timeline read: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var seq int64
		var by *int64
		var data []byte
		err := r.Scan(&seq, &e.Stream, &e.Time, &e.StoredAt, &e.Type, &e.Source, &e.EventID, &data, &by, &e.RetractionReason)
		e.Data = data
		e.Seq = uint64(seq)
		if by != nil {
			v := uint64(*by)
			e.RetractedBy = &v
		}
		return e, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("timeline read: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = encodeCursor(last.Time, last.Seq)
	}
	return out, next, nil
}

func encodeCursor(t time.Time, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + "." + strconv.FormatUint(seq, 10)))
}

func decodeCursor(c string) (time.Time, uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, 0, ErrBadCursor
	}
	ts, sq, ok := strings.Cut(string(b), ".")
	if !ok {
		return time.Time{}, 0, ErrBadCursor
	}
	us, err1 := strconv.ParseInt(ts, 10, 64)
	seq, err2 := strconv.ParseUint(sq, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, ErrBadCursor
	}
	return time.UnixMicro(us), seq, nil
}
