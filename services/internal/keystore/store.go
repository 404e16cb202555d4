package keystore

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/migrate"
)

// MaxNames is the most customers or key ids one call, or one request, may name.
const MaxNames = 1000

// maxKeyIDLen is the longest key id a sealed value may carry (schemas.SealedSchema).
const maxKeyIDLen = 64

// Errors of the store. Those matching ErrInvalidRequest are the caller's to fix and are
// safe to show it; the others are operational.
var (
	// ErrInvalidRequest: the request names too many, or malformed, customers or ids.
	ErrInvalidRequest = errors.New("invalid key request")
	// ErrWrongMasterKey: the store's data keys are wrapped under another master key.
	ErrWrongMasterKey = errors.New("wrong master key")
	// ErrUnwrap: a stored data key could not be unwrapped (wrong master key, or the row
	// was altered). No key is returned in its place.
	ErrUnwrap = errors.New("data key cannot be unwrapped")
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the key store's tables (schema "keystore").
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "keystore", "keystore", migrations, "migrations")
}

// Store keeps customers' data keys in PostgreSQL, wrapped under a master key. It
// implements events.KeySource; see the package documentation for its guarantees.
type Store struct {
	pool *pgxpool.Pool
	kek  *MasterKey
}

var _ events.KeySource = (*Store)(nil)

// Open returns the store over pool (migrated with Migrate), wrapping new data keys
// under kek. It records kek as the store's key-encryption key on first use, and fails
// with ErrWrongMasterKey if the store already belongs to another one, so that a
// misconfigured key service neither serves errors for every old key nor mixes keys
// wrapped under two master keys.
func Open(ctx context.Context, pool *pgxpool.Pool, kek *MasterKey) (*Store, error) {
	if pool == nil || kek == nil {
		return nil, errors.New("keystore: open: pool and master key are required")
	}
	// ON CONFLICT without a target also covers keks_one_current: when another KEK is
	// current, nothing is inserted and the check below names it.
	if _, err := pool.Exec(ctx, `INSERT INTO keystore.keks (kek_id) VALUES ($1) ON CONFLICT DO NOTHING`, kek.id); err != nil {
		return nil, fmt.Errorf("keystore: open: register kek: %w", err)
	}
	var current string
	err := pool.QueryRow(ctx, `SELECT kek_id FROM keystore.keks WHERE state = 'current'`).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("keystore: open: %w: kek %s is retired and no kek is current (check --master-key-file)", ErrWrongMasterKey, kek.id)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open: current kek: %w", err)
	}
	if current != kek.id {
		return nil, fmt.Errorf("keystore: open: %w: the store's data keys are wrapped under kek %s, the master key given is kek %s (check --master-key-file)", ErrWrongMasterKey, current, kek.id)
	}
	return &Store{pool: pool, kek: kek}, nil
}

// CustomerKeys implements events.KeySource: it returns the current data key of every
// customer listed, creating one for those that have none (never had one, or erased).
func (s *Store) CustomerKeys(ctx context.Context, customers []string) (map[string]events.DataKey, error) {
	keys, _, err := s.customerKeys(ctx, customers)
	return keys, err
}

// KeysByID implements events.KeySource: it returns the keys with the given ids. Erased
// and unknown ids are absent.
func (s *Store) KeysByID(ctx context.Context, ids []string) (map[string]events.DataKey, error) {
	keys, _, err := s.keysByID(ctx, ids)
	return keys, err
}

// Erased returns which of the given key ids were erased, in the order asked.
func (s *Store) Erased(ctx context.Context, ids []string) ([]string, error) {
	names, err := checkIDs(ids)
	if err != nil {
		return nil, fmt.Errorf("erased: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key_id FROM keystore.erased_keys WHERE key_id = ANY($1)`, names)
	if err != nil {
		return nil, fmt.Errorf("erased: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("erased: %w", err)
	}
	return inOrder(names, found), nil
}

// Receipt is the record of an erasure.
type Receipt struct {
	Customer string    `json:"customer"`
	KeyIDs   []string  `json:"key_ids"` // keys deleted by this erasure; empty if the customer had none
	ErasedAt time.Time `json:"erased_at"`
}

// Erase deletes the customer's data key (crypto-shredding: every value sealed with it
// becomes unreadable) and records its id as erased, atomically. Erasing a customer
// without a current key is a no-op that returns an empty receipt. A later CustomerKeys
// creates a new key with a new id. Clients that cached the key may use it until their
// cache lifetime has passed (see the package documentation).
func (s *Store) Erase(ctx context.Context, customer string) (Receipt, error) {
	if !events.ValidCustomerID(customer) {
		return Receipt{}, fmt.Errorf("erase: %w: customer: not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)", ErrInvalidRequest)
	}
	rs, err := s.EraseAll(ctx, []Erasure{{Customer: customer}})
	if err != nil {
		return Receipt{}, fmt.Errorf("erase customer %s: %w", customer, err)
	}
	return rs[0], nil
}

// maxAttempts bounds the retries of CustomerKeys: after a deadlock or serialization
// failure, or when a customer's key was erased between the insert and the read.
const maxAttempts = 5

// customerKeys is CustomerKeys, also reporting how many keys it created.
func (s *Store) customerKeys(ctx context.Context, customers []string) (map[string]events.DataKey, int, error) {
	names, err := checkCustomers(customers)
	if err != nil {
		return nil, 0, fmt.Errorf("customer keys: %w", err)
	}
	out := make(map[string]events.DataKey, len(names))
	created := 0
	want := names
	for attempt := 1; len(want) > 0; attempt++ {
		n, err := s.getOrCreate(ctx, want, out)
		created += n
		if err != nil {
			if attempt == maxAttempts || !retryable(err) {
				return nil, created, fmt.Errorf("customer keys: %w", err)
			}
		} else {
			var missing []string
			for _, c := range want {
				if _, ok := out[c]; !ok {
					missing = append(missing, c)
				}
			}
			if len(missing) > 0 && attempt == maxAttempts {
				return nil, created, fmt.Errorf("customer keys: %d customers still without a key after %d attempts (erased concurrently?)", len(missing), attempt)
			}
			want = missing
		}
		if len(want) > 0 {
			select {
			case <-ctx.Done():
				return nil, created, fmt.Errorf("customer keys: %w", ctx.Err())
			case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
			}
		}
	}
	return out, created, nil
}

// getOrCreate is one round trip: insert a fresh key for every customer listed, doing
// nothing where one exists, then read the current keys. The two statements run in one
// implicit transaction, each with its own snapshot (READ COMMITTED), so the read sees
// keys that concurrent callers committed while the insert waited for them: both callers
// get the same key. Rows are inserted in customer order, so two batches sharing
// customers wait for each other instead of deadlocking.
func (s *Store) getOrCreate(ctx context.Context, customers []string, out map[string]events.DataKey) (int, error) {
	ids := make([]string, len(customers))
	wrapped := make([][]byte, len(customers))
	dk := make([]byte, dataKeySize)
	for i, c := range customers {
		id, err := uuid.NewRandom()
		if err != nil {
			return 0, fmt.Errorf("key id: %w", err)
		}
		ids[i] = id.String()
		rand.Read(dk)
		wrapped[i] = s.kek.wrap(ids[i], c, dk)
	}
	clear(dk)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO keystore.data_keys (customer_id, key_id, kek_id, wrapped)
		SELECT c, k, $4, w FROM unnest($1::text[], $2::text[], $3::bytea[]) AS t(c, k, w)
		ORDER BY c
		ON CONFLICT DO NOTHING`, customers, ids, wrapped, s.kek.id)
	b.Queue(`SELECT customer_id, key_id, kek_id, wrapped FROM keystore.data_keys WHERE customer_id = ANY($1)`, customers)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	tag, err := br.Exec()
	if err != nil {
		return 0, err
	}
	created := int(tag.RowsAffected())
	rows, err := br.Query()
	if err != nil {
		return 0, err
	}
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.customer, &r.keyID, &r.kekID, &r.wrapped}, func() error {
		k, err := s.unwrap(r)
		if err != nil {
			return err
		}
		out[k.Customer] = k
		return nil
	})
	if errors.Is(err, ErrUnwrap) {
		return created, err // the insert is committed all the same
	}
	if err != nil {
		return 0, err
	}
	return created, br.Close()
}

type row struct {
	customer, keyID, kekID string
	wrapped                []byte
}

func (s *Store) unwrap(r row) (events.DataKey, error) {
	if r.kekID != s.kek.id {
		return events.DataKey{}, fmt.Errorf("%w: key %s is wrapped under kek %s, this store holds kek %s", ErrUnwrap, r.keyID, r.kekID, s.kek.id)
	}
	dk, err := s.kek.unwrap(r.keyID, r.customer, r.wrapped)
	if err != nil {
		return events.DataKey{}, err
	}
	return events.DataKey{ID: r.keyID, Customer: r.customer, Key: dk}, nil
}

// keysByID is KeysByID, also listing the requested ids that were erased, in the order
// asked. One statement, so one snapshot: a key is either returned or erased, never both.
func (s *Store) keysByID(ctx context.Context, ids []string) (map[string]events.DataKey, []string, error) {
	names, err := checkIDs(ids)
	if err != nil {
		return nil, nil, fmt.Errorf("keys by id: %w", err)
	}
	out := make(map[string]events.DataKey, len(names))
	if len(names) == 0 {
		return out, nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT customer_id, key_id, kek_id, wrapped FROM keystore.data_keys WHERE key_id = ANY($1)
		UNION ALL
		SELECT customer_id, key_id, NULL, NULL FROM keystore.erased_keys WHERE key_id = ANY($1)`, names)
	if err != nil {
		return nil, nil, fmt.Errorf("keys by id: %w", err)
	}
	var (
		r      row
		kekID  *string
		erased []string
	)
	_, err = pgx.ForEachRow(rows, []any{&r.customer, &r.keyID, &kekID, &r.wrapped}, func() error {
		if kekID == nil {
			erased = append(erased, r.keyID)
			return nil
		}
		r.kekID = *kekID
		k, err := s.unwrap(r)
		if err != nil {
			return err
		}
		out[k.ID] = k
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("keys by id: %w", err)
	}
	return out, inOrder(names, erased), nil
}

// checkCustomers validates customer ids and returns them without duplicates.
func checkCustomers(customers []string) ([]string, error) {
	if len(customers) > MaxNames {
		return nil, fmt.Errorf("%w: customers: %d listed, at most %d per request", ErrInvalidRequest, len(customers), MaxNames)
	}
	var fe fieldErrors
	for i, c := range customers {
		if !events.ValidCustomerID(c) {
			fe.add(fmt.Sprintf("customers[%d]", i), "not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)")
		}
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return dedup(customers), nil
}

// checkIDs validates key ids (any text of 1 to 64 characters, as a sealed value's kid)
// and returns them without duplicates.
func checkIDs(ids []string) ([]string, error) {
	if len(ids) > MaxNames {
		return nil, fmt.Errorf("%w: ids: %d listed, at most %d per request", ErrInvalidRequest, len(ids), MaxNames)
	}
	var fe fieldErrors
	for i, id := range ids {
		field := fmt.Sprintf("ids[%d]", i)
		n := utf8.RuneCountInString(id)
		switch {
		case n == 0 || n > maxKeyIDLen:
			fe.add(field, fmt.Sprintf("must be 1 to %d characters", maxKeyIDLen))
		case !utf8.ValidString(id):
			fe.add(field, "not valid UTF-8")
		case containsNUL(id):
			fe.add(field, "contains a NUL character")
		}
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return dedup(ids), nil
}

// fieldErrors collects the fields refused, grouped by reason, so that a request with a
// thousand bad names gets a short answer. It names fields, never their values.
type fieldErrors struct {
	reasons []string
	fields  map[string][]string
}

func (fe *fieldErrors) add(field, reason string) {
	if fe.fields == nil {
		fe.fields = map[string][]string{}
	}
	if _, ok := fe.fields[reason]; !ok {
		fe.reasons = append(fe.reasons, reason)
	}
	fe.fields[reason] = append(fe.fields[reason], field)
}

func (fe *fieldErrors) err() error {
	if len(fe.reasons) == 0 {
		return nil
	}
	const show = 5
	parts := make([]string, 0, len(fe.reasons))
	for _, r := range fe.reasons {
		fields := fe.fields[r]
		names := strings.Join(fields[:min(len(fields), show)], ", ")
		if len(fields) > show {
			names += fmt.Sprintf(" and %d more", len(fields)-show)
		}
		parts = append(parts, names+": "+r)
	}
	return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(parts, "; "))
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

func dedup(names []string) []string {
	seen := make(map[string]struct{}, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if _, ok := seen[n]; !ok {
			seen[n] = struct{}{}
			out = append(out, n)
		}
	}
	return out
}

// inOrder returns the members of found in the order of names.
func inOrder(names, found []string) []string {
	if len(found) == 0 {
		return nil
	}
	set := make(map[string]struct{}, len(found))
	for _, f := range found {
		set[f] = struct{}{}
	}
	out := make([]string, 0, len(found))
	for _, n := range names {
		if _, ok := set[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// retryable reports errors worth another attempt: deadlocks, serialization failures
// (a store run at REPEATABLE READ or above), and failures before anything was sent.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return pgconn.SafeToRetry(err)
}
