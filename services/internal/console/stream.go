package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// sse writes one server-sent event stream.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// open answers 200 with the stream's headers and lifts the write deadline the server
// sets for ordinary requests, since a stream lives as long as its client.
func openStream(w http.ResponseWriter, r *http.Request) (*sse, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("lift write deadline: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache, private")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: rc}
	// The retry hint, and a first byte so the client sees the stream open.
	if _, err := fmt.Fprint(w, "retry: 2000\n: open\n\n"); err != nil {
		return nil, err
	}
	return s, rc.Flush()
}

// send writes one event; data is a single line of JSON.
func (s *sse) send(event, id string, data []byte) error {
	if _, err := fmt.Fprintf(s.w, "event: %s\nid: %s\ndata: %s\n\n", event, id, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) heartbeat() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// poller is what a stream looks for at each tick: the events to send since the last
// tick. The first call primes it and returns nothing.
type poller func(ctx context.Context) ([]outgoing, error)

type outgoing struct {
	id   string
	data []byte
}

// refuse answers a stream request that may not be served, as the query API answers:
// a JSON error, with WWW-Authenticate for 401 and 403.
func refuse(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	httpserve.WriteError(w, status, body)
}

// serveStream runs a stream until the client goes away or its token expires: poll at
// each tick, send what it found, a heartbeat when quiet.
func (c *Console) serveStream(w http.ResponseWriter, r *http.Request, route, event, stream string, poll poller, logAttrs ...any) {
	p, err := c.cfg.Authorize(r, route)
	switch {
	case errors.Is(err, access.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", access.Challenge(err))
		refuse(w, http.StatusUnauthorized, "unauthenticated", access.Reason(err))
		return
	case errors.Is(err, access.ErrForbidden):
		w.Header().Set("WWW-Authenticate", access.Challenge(err))
		refuse(w, http.StatusForbidden, "forbidden", access.Reason(err))
		return
	case err != nil:
		c.cfg.Log.Error("console stream: deciding who opens it failed", "stream", stream, "error", err)
		refuse(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	ctx := r.Context()
	if !p.Expires.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.Expires)
		defer cancel()
	}
	log := c.cfg.Log.With(append([]any{"stream", stream, "viewer", p.StaffID}, logAttrs...)...)
	// Prime before answering: what exists now is not new.
	failing := false
	if _, err := poll(ctx); err != nil {
		log.Warn("console stream: first poll failed; retrying at each tick", "error", err)
		failing = true
	}
	s, err := openStream(w, r)
	if err != nil {
		log.Debug("console stream: open failed", "error", err)
		return
	}
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	beat := time.NewTicker(c.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stopping:
			return
		case <-beat.C:
			if err := s.heartbeat(); err != nil {
				return
			}
		case <-tick.C:
			out, err := poll(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !failing { // once per streak of failures, not at every tick
					log.Warn("console stream: poll failed; retrying at each tick", "error", err)
				}
				failing = true
				continue
			}
			failing = false
			for _, o := range out {
				if err := s.send(event, o.id, o.data); err != nil {
					return
				}
			}
		}
	}
}

// streamCustomer streams the new entries of a customer's timeline.
func (c *Console) streamCustomer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !events.ValidCustomerID(id) {
		http.Error(w, `{"error":{"code":"invalid_parameter","parameter":"id","message":"a customer id is 1 to 64 characters of A-Z, a-z, 0-9, _ and -"}}`, http.StatusBadRequest)
		return
	}
	c.serveStream(w, r, "stream_customer", "timeline", "timeline", c.timelinePoller(id), "customer_id", id)
}

type entryKey struct {
	stream string
	seq    uint64
}

// timelinePoller finds the entries that joined the customer's newest Window since
// the previous poll.
func (c *Console) timelinePoller(customer string) poller {
	var seen map[entryKey]bool // nil until primed
	return func(ctx context.Context) ([]outgoing, error) {
		target, err := c.serving.Target(ctx, timeline.Name, c.cfg.TimelineTarget)
		if err != nil {
			return nil, fmt.Errorf("serving version of %s: %w", timeline.Name, err)
		}
		items, _, err := timeline.Read(ctx, c.cfg.DB, target, timeline.Query{Customer: customer, Limit: c.cfg.Window})
		if err != nil {
			return nil, err
		}
		now := make(map[entryKey]bool, len(items))
		var out []outgoing
		for i := len(items) - 1; i >= 0; i-- { // oldest first
			e := items[i]
			k := entryKey{e.Stream, e.Seq}
			now[k] = true
			if seen == nil || seen[k] {
				continue
			}
			// As the query API shows it (timeline.Entry, times in UTC).
			e.Time, e.StoredAt = e.Time.UTC(), e.StoredAt.UTC()
			b, err := json.Marshal(e)
			if err != nil {
				return nil, fmt.Errorf("encode timeline entry: %w", err)
			}
			out = append(out, outgoing{id: e.Stream + ":" + strconv.FormatUint(e.Seq, 10), data: b})
		}
		seen = now
		return out, nil
	}
}

// streamAlerts streams the churn alerts raised after the connection opened.
func (c *Console) streamAlerts(w http.ResponseWriter, r *http.Request) {
	c.serveStream(w, r, "stream_alerts", "alert", "alerts", c.alertPoller())
}

// alertPoller finds the alerts not seen before whose raise time is within
// AlertLookback of the newest raise seen.
func (c *Console) alertPoller() poller {
	primed := false
	seen := map[string]time.Time{} // alert id -> raised at
	var newest time.Time           // the newest raise seen; zero: none yet
	return func(ctx context.Context) ([]outgoing, error) {
		target, err := c.serving.Target(ctx, churn.Name, c.cfg.ChurnTarget)
		if err != nil {
			return nil, fmt.Errorf("serving version of %s: %w", churn.Name, err)
		}
		table := pgx.Identifier{target, "alerts"}.Sanitize()
		if !primed {
			var last *time.Time
			if err := c.cfg.DB.QueryRow(ctx, `SELECT max(raised_at) FROM `+table).Scan(&last); err != nil {
				return nil, fmt.Errorf("churn alerts: newest raise: %w", err)
			}
			if last != nil {
				newest = *last
			}
		}
		from := time.Time{}
		if !newest.IsZero() {
			from = newest.Add(-c.cfg.AlertLookback)
		}
		rows, err := c.cfg.DB.Query(ctx, `SELECT alert_id, raised_at FROM `+table+` WHERE raised_at >= $1`, from)
		if err != nil {
			return nil, fmt.Errorf("churn alerts since %s: %w", from.Format(time.RFC3339), err)
		}
		unseen := map[string]time.Time{}
		var id string
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error {
			if _, ok := seen[id]; !ok {
				unseen[id] = at
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("churn alerts since %s: %w", from.Format(time.RFC3339), err)
		}
		type found struct {
			at  time.Time
			row churn.QueueRow
		}
		var fresh []found
		if primed && len(unseen) > 0 {
			rows, err := c.cfg.DB.Query(ctx, `SELECT alert_id, raised_at, doc, priority FROM `+table+` WHERE alert_id = ANY($1)`, slices.Collect(maps.Keys(unseen)))
			if err != nil {
				return nil, fmt.Errorf("churn alerts: %d new: %w", len(unseen), err)
			}
			var doc []byte
			var prio float64
			if _, err := pgx.ForEachRow(rows, []any{&id, &at, &doc, &prio}, func() error {
				f := found{at: at, row: churn.QueueRow{Priority: prio}}
				if err := json.Unmarshal(doc, &f.row.Alert); err != nil {
					return fmt.Errorf("alert %s: %w", id, err)
				}
				fresh = append(fresh, f)
				return nil
			}); err != nil {
				return nil, fmt.Errorf("churn alerts: %d new: %w", len(unseen), err)
			}
		}
		// Only now, when they are about to be sent, are they seen.
		for id, at := range unseen {
			seen[id] = at
			if at.After(newest) {
				newest = at
			}
		}
		primed = true
		// Forget what fell out of the window: it cannot be selected again.
		low := newest.Add(-c.cfg.AlertLookback)
		for k, t := range seen {
			if t.Before(low) {
				delete(seen, k)
			}
		}
		slices.SortFunc(fresh, func(a, b found) int {
			if n := a.at.Compare(b.at); n != 0 {
				return n
			}
			return strings.Compare(a.row.ID, b.row.ID)
		})
		out := make([]outgoing, 0, len(fresh))
		for _, f := range fresh {
			b, err := json.Marshal(f.row)
			if err != nil {
				return nil, fmt.Errorf("encode alert %s: %w", f.row.ID, err)
			}
			out = append(out, outgoing{id: f.row.ID, data: b})
		}
		return out, nil
	}
}
