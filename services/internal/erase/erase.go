package erase

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/notify"
)

// Schema is the PostgreSQL schema of the erasure requests.
const Schema = "erasure"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the requests table (schema "erasure"). New calls it.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "erasure", Schema, migrations, "migrations")
}

// Errors callers map to answers.
var (
	// ErrInvalid: an argument is wrong; the message names it.
	ErrInvalid = errors.New("invalid erasure request")
	// ErrBusy: another run is erasing the same customer right now.
	ErrBusy = errors.New("an erasure of this customer is running")
)

// KeyEraser deletes customers' data keys: the key service's erase subject
// (*keystore.EraseClient).
type KeyEraser interface {
	Erase(ctx context.Context, customer string, upTo time.Time, dryRun bool) (keystore.Receipt, error)
}

// Deps are what an Eraser works with.
type Deps struct {
	Pool *pgxpool.Pool
	// Publisher appends customer.erased under the erasure command's source.
	Publisher *events.Publisher
	Layout    events.Layout
	Keys      KeyEraser
	// Resolve builds the projection that writes a version (customer360_v2), to find
	// its Purger. A version it cannot resolve fails the erasure: nobody can say
	// whether it holds personal data.
	Resolve func(target string) (projections.Projection, error)
	// Forget drops a customer's keys from this process's key cache (KeyClient.Forget).
	// nil: this process caches none.
	Forget func(customer string)
	Log    *slog.Logger
}

// Config tunes an Eraser.
type Config struct {
	// Privacy: the clients' key cache lifetime and the retention limits
	// (deploy/privacy.json). Zero KeyCacheTTL: DefaultKeyCacheTTL.
	Privacy Privacy
	// Now is the clock of requests and of the retention cutoff (default time.Now).
	Now func() time.Time
}

// Eraser erases customers' personal data: see the package documentation.
type Eraser struct {
	cfg Config
	d   Deps
	log *slog.Logger
}

// New returns an Eraser, migrating its table.
func New(ctx context.Context, cfg Config, d Deps) (*Eraser, error) {
	var errs []error
	if d.Pool == nil {
		errs = append(errs, errors.New("erase: Deps.Pool: required"))
	}
	if d.Publisher == nil {
		errs = append(errs, errors.New("erase: Deps.Publisher: required"))
	}
	if d.Keys == nil {
		errs = append(errs, errors.New("erase: Deps.Keys: required"))
	}
	if d.Resolve == nil {
		errs = append(errs, errors.New("erase: Deps.Resolve: required"))
	}
	if err := d.Layout.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("erase: Deps.Layout: %w", err))
	}
	if cfg.Privacy.KeyCacheTTL == 0 {
		cfg.Privacy.KeyCacheTTL = DefaultKeyCacheTTL
	}
	if err := cfg.Privacy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("erase: Config.Privacy: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if err := Migrate(ctx, d.Pool); err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	return &Eraser{cfg: cfg, d: d, log: d.Log}, nil
}

// Request asks for a customer's personal data to be erased.
type Request struct {
	Customer string
	// Reason is a code (customer_request, retention, legal_order, ...): lowercase
	// letters and underscores, stored in clear in the log.
	Reason string
	// Operator is the account id of who asks, never a name.
	Operator string
}

// Validate checks the request; errors match ErrInvalid and name the field.
func (r Request) Validate() error {
	var errs []error
	if !events.ValidCustomerID(r.Customer) {
		errs = append(errs, fmt.Errorf("%w: customer: not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)", ErrInvalid))
	}
	if !reasonCode.MatchString(r.Reason) {
		errs = append(errs, fmt.Errorf("%w: reason: a code of 1-64 lowercase letters and underscores, such as customer_request, retention or legal_order (it is stored in clear: never free text)", ErrInvalid))
	}
	if !operatorID.MatchString(r.Operator) {
		errs = append(errs, fmt.Errorf("%w: operator: 1-64 characters of A-Z a-z 0-9 _ . : - (an account id, not a name)", ErrInvalid))
	}
	return errors.Join(errs...)
}

// Step statuses in a receipt.
const (
	StepDone    = "done"         // by this run
	StepAlready = "already done" // by an earlier run of the same request
)

// Step is one step of an erasure as the receipt reports it.
type Step struct {
	Name   string    `json:"name"` // log, keys, purge
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// Purged is what one version (or store) lost.
type Purged struct {
	Target string `json:"target"` // customer360_v2, projections.dead_letters, notify.parked
	Role   string `json:"role,omitempty"`
	Rows   int64  `json:"rows"`
}

// Pending is a version that has not yet folded the erasure: its fold purges again when
// it does (the explicit purge already ran).
type Pending struct {
	Target     string `json:"target"`
	Checkpoint uint64 `json:"checkpoint"`
	Seq        uint64 `json:"seq"`
}

// Receipt is the record of an erasure: what was removed, and when it is complete.
type Receipt struct {
	Request     int64     `json:"request"`
	Customer    string    `json:"customer"`
	Reason      string    `json:"reason"`
	Operator    string    `json:"operator"`
	RequestedAt time.Time `json:"requested_at"`
	// Resumed: this run continued a request an earlier run left unfinished.
	Resumed bool `json:"resumed"`
	// AlreadyErased: an earlier request erased everything and nothing was left; no new
	// event was recorded.
	AlreadyErased bool `json:"already_erased"`
	// The customer.erased event in the log.
	EventID string `json:"event_id"`
	Stream  string `json:"stream"`
	Seq     uint64 `json:"seq"`
	// KeyIDs are the data keys deleted (crypto-shredding).
	KeyIDs        []string  `json:"key_ids"`
	KeysErasedAt  time.Time `json:"keys_erased_at"`
	Purged        []Purged  `json:"purged"`
	NoPersonal    []string  `json:"no_personal_data"` // versions whose read model holds no personal data
	Pending       []Pending `json:"pending_folds,omitempty"`
	Steps         []Step    `json:"steps"`
	CompleteAfter time.Time `json:"complete_after"`
	Kept          []string  `json:"kept"`
}

// kept says what an erasure leaves, by design.
var kept = []string{
	"the log keeps the customer's events: their personal fields are sealed under the deleted keys and can no longer be opened, in the log and in its backups",
	"read models keep ids, amounts, codes and counts (no personal data); timeline rows keep payloads without personal fields",
	"the access audit log (schema access_audit) keeps who read which customer's fields: ids and field names only, never values",
	"the key store keeps the ids of the deleted keys (keystore.erased_keys), never key material",
	"database backups taken before the erasure hold the wrapped keys until they expire; a key store restored from one erases them again at start (the log records the erasure)",
}

// Erase erases a customer's personal data: see the package documentation for the
// order of the steps. Running it again for the same customer continues what an
// interrupted run left and says which steps were already done; once a request is
// finished, a new one is made only if something is left to erase.
func (e *Eraser) Erase(ctx context.Context, r Request) (*Receipt, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	conn, err := e.d.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("erase %s: %w", r.Customer, err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('touchstream.erase.' || $1))`, r.Customer).Scan(&locked); err != nil {
		return nil, fmt.Errorf("erase %s: lock: %w", r.Customer, err)
	}
	if !locked {
		return nil, fmt.Errorf("erase %s: %w; try again when it has finished", r.Customer, ErrBusy)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('touchstream.erase.' || $1))`, r.Customer)
	}()

	req, resumed, err := e.open(ctx, r)
	if err != nil {
		return nil, err
	}
	if req == nil {
		last, err := e.last(ctx, r.Customer)
		if err != nil {
			return nil, err
		}
		rc := last.receipt()
		rc.AlreadyErased = true
		return rc, nil
	}
	rc := req.receipt()
	rc.Resumed = resumed
	if err := e.logStep(ctx, req, rc); err != nil {
		return nil, err
	}
	if err := e.keyStep(ctx, req, rc); err != nil {
		return nil, err
	}
	if err := e.purgeStep(ctx, req, rc); err != nil {
		return nil, err
	}
	if err := e.pending(ctx, rc); err != nil {
		return nil, err
	}
	if _, err := e.d.Pool.Exec(ctx, `UPDATE erasure.requests SET finished_at = now() WHERE id = $1`, req.id); err != nil {
		return nil, fmt.Errorf("erase %s: finish request %d: %w", r.Customer, req.id, err)
	}
	e.log.Info("customer erased", "customer_id", r.Customer, "request", req.id, "reason", r.Reason, "operator", r.Operator,
		"event_id", rc.EventID, "stream_seq", rc.Seq, "keys", len(rc.KeyIDs), "resumed", resumed, "complete_after", rc.CompleteAfter)
	return rc, nil
}

// request is a row of erasure.requests.
type request struct {
	id               int64
	customer         string
	eventID          string
	reason, operator string
	requestedAt      time.Time
	stream           *string
	seq              *int64
	loggedAt         *time.Time
	keyIDs           []string
	keysErasedAt     *time.Time
	purged           map[string]Purged
	purgedAt         *time.Time
	completeAfter    *time.Time
	finishedAt       *time.Time
}

const requestColumns = `id, customer_id, event_id, reason, operator, requested_at, stream, seq, logged_at, key_ids,
	keys_erased_at, coalesce(purged, '{}'), purged_at, complete_after, finished_at`

func scanRequest(row pgx.Row) (*request, error) {
	var q request
	var purged []byte
	err := row.Scan(&q.id, &q.customer, &q.eventID, &q.reason, &q.operator, &q.requestedAt, &q.stream, &q.seq, &q.loggedAt,
		&q.keyIDs, &q.keysErasedAt, &purged, &q.purgedAt, &q.completeAfter, &q.finishedAt)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(purged, &q.purged); err != nil {
		return nil, fmt.Errorf("request %d: purged: %w", q.id, err)
	}
	return &q, nil
}

// receipt is what the request row says so far.
func (q *request) receipt() *Receipt {
	rc := &Receipt{Request: q.id, Customer: q.customer, Reason: q.reason, Operator: q.operator, RequestedAt: q.requestedAt,
		EventID: q.eventID, KeyIDs: slices.Clone(q.keyIDs), Purged: []Purged{}, NoPersonal: []string{}, Steps: []Step{}, Kept: kept}
	if rc.KeyIDs == nil {
		rc.KeyIDs = []string{}
	}
	if q.stream != nil && q.seq != nil {
		rc.Stream, rc.Seq = *q.stream, uint64(*q.seq)
	}
	if q.loggedAt != nil {
		rc.Steps = append(rc.Steps, Step{Name: "log", Status: StepAlready, At: *q.loggedAt})
	}
	if q.keysErasedAt != nil {
		rc.KeysErasedAt = *q.keysErasedAt
		rc.Steps = append(rc.Steps, Step{Name: "keys", Status: StepAlready, At: *q.keysErasedAt})
	}
	if q.purgedAt != nil {
		rc.Steps = append(rc.Steps, Step{Name: "purge", Status: StepAlready, At: *q.purgedAt})
	}
	for _, k := range slices.Sorted(maps.Keys(q.purged)) {
		rc.Purged = append(rc.Purged, q.purged[k])
	}
	if q.completeAfter != nil {
		rc.CompleteAfter = *q.completeAfter
	}
	return rc
}

// step records a step done by this run in the receipt, replacing an earlier run's.
func (rc *Receipt) step(name, status string, at time.Time) {
	rc.Steps = slices.DeleteFunc(rc.Steps, func(s Step) bool { return s.Name == name })
	rc.Steps = append(rc.Steps, Step{Name: name, Status: status, At: at})
}

// open returns the customer's unfinished request (resumed), or a new one; nil when the
// last request is finished and nothing is left to erase.
func (e *Eraser) open(ctx context.Context, r Request) (*request, bool, error) {
	q, err := scanRequest(e.d.Pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM erasure.requests
		WHERE customer_id = $1 AND finished_at IS NULL`, r.Customer))
	switch {
	case err == nil:
		return q, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, false, fmt.Errorf("erase %s: read request: %w", r.Customer, err)
	}
	if last, err := e.last(ctx, r.Customer); err == nil {
		left, err := e.leftOver(ctx, r.Customer)
		if err != nil {
			return nil, false, err
		}
		if !left {
			e.log.Info("customer already erased; nothing left", "customer_id", r.Customer, "request", last.id)
			return nil, false, nil
		}
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("erase %s: event id: %w", r.Customer, err)
	}
	q, err = scanRequest(e.d.Pool.QueryRow(ctx, `INSERT INTO erasure.requests (customer_id, event_id, reason, operator, requested_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+requestColumns, r.Customer, "erase-"+id.String(), r.Reason, r.Operator, e.cfg.Now()))
	if err != nil {
		return nil, false, fmt.Errorf("erase %s: record request: %w", r.Customer, err)
	}
	return q, false, nil
}

// last is the customer's latest finished request (pgx.ErrNoRows: none).
func (e *Eraser) last(ctx context.Context, customer string) (*request, error) {
	q, err := scanRequest(e.d.Pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM erasure.requests
		WHERE customer_id = $1 AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1`, customer))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("erase %s: read last request: %w", customer, err)
	}
	return q, err
}

// leftOver reports whether anything of the customer is left to erase: a data key, or
// rows a purge would change (found by purging in a transaction rolled back).
func (e *Eraser) leftOver(ctx context.Context, customer string) (bool, error) {
	keys, err := e.d.Keys.Erase(ctx, customer, time.Time{}, true)
	if err != nil {
		return false, fmt.Errorf("erase %s: %w", customer, err)
	}
	if len(keys.KeyIDs) > 0 {
		return true, nil
	}
	tx, err := e.d.Pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("erase %s: %w", customer, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	purged, _, err := e.purge(ctx, tx, customer)
	if err != nil {
		return false, err
	}
	for _, p := range purged {
		if p.Rows > 0 {
			return true, nil
		}
	}
	return false, nil
}

// logStep records the erasure in the log: the durable intent, first.
func (e *Eraser) logStep(ctx context.Context, q *request, rc *Receipt) error {
	if q.seq != nil {
		return nil
	}
	ev, err := events.NewEvent(q.customer, q.requestedAt, events.CustomerErased{Reason: q.reason, Operator: q.operator, RequestedAt: q.requestedAt})
	if err != nil {
		return fmt.Errorf("erase %s: %w", q.customer, err)
	}
	ev.ID = q.eventID
	res, err := e.d.Publisher.Publish(ctx, ev)
	if err != nil {
		return fmt.Errorf("erase %s: publish %s: %w", q.customer, events.TypeCustomerErased, err)
	}
	var at time.Time
	if err := e.d.Pool.QueryRow(ctx, `UPDATE erasure.requests SET stream = $2, seq = $3, logged_at = now() WHERE id = $1 RETURNING logged_at`,
		q.id, res.Stream, int64(res.Seq)).Scan(&at); err != nil {
		return fmt.Errorf("erase %s: record event seq %d: %w", q.customer, res.Seq, err)
	}
	rc.Stream, rc.Seq = res.Stream, res.Seq
	status := StepDone
	if res.Duplicate {
		status = StepAlready // an earlier run published it and stopped before recording it
	}
	rc.step("log", status, at)
	return nil
}

// keyStep deletes the customer's data keys through the key service. The keys found are
// recorded before they are deleted, so a run cut short in between still reports them.
func (e *Eraser) keyStep(ctx context.Context, q *request, rc *Receipt) error {
	if q.keysErasedAt != nil {
		return nil
	}
	found, err := e.d.Keys.Erase(ctx, q.customer, time.Time{}, true)
	if err != nil {
		return fmt.Errorf("erase %s: %w", q.customer, err)
	}
	if len(found.KeyIDs) > 0 {
		if _, err := e.d.Pool.Exec(ctx, `UPDATE erasure.requests SET key_ids = (SELECT array_agg(DISTINCT k ORDER BY k)
			FROM unnest(key_ids || $2::text[]) AS k) WHERE id = $1`, q.id, found.KeyIDs); err != nil {
			return fmt.Errorf("erase %s: record keys: %w", q.customer, err)
		}
	}
	gone, err := e.d.Keys.Erase(ctx, q.customer, time.Time{}, false)
	if err != nil {
		return fmt.Errorf("erase %s: %w", q.customer, err)
	}
	if e.d.Forget != nil {
		e.d.Forget(q.customer)
	}
	status := StepDone
	if len(gone.KeyIDs) == 0 && len(q.keyIDs) > 0 {
		status = StepAlready // deleted by the run that recorded them
	}
	at := gone.ErasedAt
	if at.IsZero() {
		at = e.cfg.Now()
	}
	complete := at.Add(e.cfg.Privacy.KeyCacheTTL)
	var ids []string
	if err := e.d.Pool.QueryRow(ctx, `UPDATE erasure.requests SET keys_erased_at = $2, complete_after = $3,
			key_ids = (SELECT coalesce(array_agg(DISTINCT k ORDER BY k), '{}') FROM unnest(key_ids || $4::text[]) AS k)
		WHERE id = $1 RETURNING key_ids`, q.id, at, complete, gone.KeyIDs).Scan(&ids); err != nil {
		return fmt.Errorf("erase %s: record erased keys: %w", q.customer, err)
	}
	rc.KeyIDs, rc.KeysErasedAt, rc.CompleteAfter = ids, at, complete
	rc.step("keys", status, at)
	return nil
}

// purgeStep removes the customer's personal data from every version of every read
// model, the dead letters and the parked webhook deliveries, in one transaction that
// also records what it removed. It runs again on every run of an unfinished request
// (it is idempotent), adding what it finds.
func (e *Eraser) purgeStep(ctx context.Context, q *request, rc *Receipt) error {
	var at time.Time
	err := pgx.BeginFunc(ctx, e.d.Pool, func(tx pgx.Tx) error {
		purged, none, err := e.purge(ctx, tx, q.customer)
		if err != nil {
			return err
		}
		total := maps.Clone(q.purged)
		if total == nil {
			total = map[string]Purged{}
		}
		for _, p := range purged {
			t := total[p.Target]
			t.Target, t.Role, t.Rows = p.Target, p.Role, t.Rows+p.Rows
			total[p.Target] = t
		}
		js, err := json.Marshal(total)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `UPDATE erasure.requests SET purged = $2, purged_at = now() WHERE id = $1 RETURNING purged_at`,
			q.id, js).Scan(&at); err != nil {
			return fmt.Errorf("record purge: %w", err)
		}
		rc.Purged = rc.Purged[:0]
		for _, k := range slices.Sorted(maps.Keys(total)) {
			rc.Purged = append(rc.Purged, total[k])
		}
		rc.NoPersonal = none
		return nil
	})
	if err != nil {
		return fmt.Errorf("erase %s: purge: %w", q.customer, err)
	}
	status := StepDone
	if q.purgedAt != nil {
		status = StepAlready
	}
	rc.step("purge", status, at)
	return nil
}

// purge removes the customer's personal data inside tx. It returns the rows changed
// per version and store, and the versions whose read model holds no personal data.
func (e *Eraser) purge(ctx context.Context, tx pgx.Tx, customer string) ([]Purged, []string, error) {
	versions, err := projections.Versions(ctx, tx)
	if err != nil {
		return nil, nil, err
	}
	var out []Purged
	none := []string{}
	for _, v := range versions {
		p, err := e.d.Resolve(v.Target)
		if err != nil {
			return nil, nil, fmt.Errorf("version %s: cannot tell whether it holds personal data: %w (drop it, or fix the projector's configuration)", v.Target, err)
		}
		pg, ok := p.(projections.Purger)
		if !ok {
			none = append(none, v.Target)
			continue
		}
		n, err := pg.Purge(ctx, tx, customer)
		if err != nil {
			return nil, nil, fmt.Errorf("purge %s: %w", v.Target, err)
		}
		out = append(out, Purged{Target: v.Target, Role: v.Role, Rows: n})
	}
	dl, err := projections.PurgeDeadLetters(ctx, tx, customer)
	if err != nil {
		return nil, nil, err
	}
	var rows int64
	for _, n := range dl {
		rows += n
	}
	out = append(out, Purged{Target: "projections.dead_letters", Rows: rows})
	n, err := notify.PurgeCustomer(ctx, tx, customer)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, Purged{Target: "notify.parked", Rows: n})
	return out, none, nil
}

// pending lists the versions that keep personal data and are still folded (serving,
// rebuilding) but have not reached the erasure in the customer's partition: their
// fold of customer.erased purges again whatever a batch in flight wrote back.
func (e *Eraser) pending(ctx context.Context, rc *Receipt) error {
	if rc.Seq == 0 {
		return nil
	}
	part := e.d.Layout.PartitionOf(rc.Customer)
	for _, p := range rc.Purged {
		if p.Role != projections.RoleServing && p.Role != projections.RoleRebuilding {
			continue
		}
		cps, err := projections.LoadCheckpoints(ctx, e.d.Pool, p.Target, []int{part})
		if err != nil {
			return err
		}
		if cp := cps[part].Seq; cp < rc.Seq {
			rc.Pending = append(rc.Pending, Pending{Target: p.Target, Checkpoint: cp, Seq: rc.Seq})
		}
	}
	return nil
}
