// Package customer360 is the customer 360° read model (360°客户视图): one profile per
// customer with identity and contact (sealed), plan, region, segment, tenure, value
// tier, lifecycle stage, per-channel last touch and counts, spend (lifetime, last three
// months, monthly), open complaints with their deadlines, last satisfaction and NPS,
// device, port-out and termination, and the stream sequence and event time it
// reflects.
//
// The fold is a pure function of the customer's events in stream order and the
// versioned tier table. A batch reads the profiles it touches with one query, folds in
// memory and writes them back with one multi-row upsert. An event.retracted cannot be
// undone incrementally for every field (last satisfaction, plan), so the customer is
// recomputed from its own events through the timeline index, skipping retracted ones:
// a retracted event counts in no aggregate.
//
// Personal fields stay sealed in the profile; a keyed hash of the normalised phone
// number (derived by opening the sealed phone with the customer's data key while
// folding) makes search by phone possible without the number being stored in clear.
// After an erasure the key is gone: a replay derives no hash and opens no field; and
// folding customer.erased drops the sealed fields and the hash from the profile (as
// Purge does for a version nobody folds any more), so nothing personal is left.
package customer360

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/valuetier"
)

// Name is the projection's name.
const Name = "customer360"

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure the projection.
type Options struct {
	Target   string           // schema, e.g. "customer360_v1"
	Tiers    valuetier.Config // value tier table
	Keys     events.KeySource // for the phone search hash; nil: no phone search
	PhoneKey []byte           // secret of the phone search hash (32 bytes)
}

// Projection folds the log into customer profiles.
type Projection struct {
	opts  Options
	table string
}

var _ projections.Projection = (*Projection)(nil)

// New returns the projection.
func New(opts Options) (*Projection, error) {
	if opts.Target == "" {
		return nil, errors.New("customer360: target required")
	}
	if opts.Keys != nil && len(opts.PhoneKey) < 16 {
		return nil, errors.New("customer360: phone key of at least 16 bytes required with a key source")
	}
	if opts.Tiers.Location() == nil {
		return nil, errors.New("customer360: value tier table required (valuetier.Default or Load)")
	}
	return &Projection{opts: opts, table: pgx.Identifier{opts.Target, "profiles"}.Sanitize()}, nil
}

func (p *Projection) Name() string   { return Name }
func (p *Projection) Target() string { return p.opts.Target }

// DeferredIndexes are the profile indexes only readers use (search by phone, lists by
// tier, region, lifecycle and segment): a rebuild creates them at its end. The fold
// reads profiles by key and, at a month's first tick, by (partition, as_of_month).
func (p *Projection) DeferredIndexes() []string {
	return []string{"profiles_phone", "profiles_tier", "profiles_region", "profiles_lifecycle", "profiles_segment"}
}

// Migrate creates the tables.
func (p *Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, Name, p.opts.Target, migrations, "migrations")
}

// Apply folds a batch.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	order, by := b.ByCustomer()
	if len(order) == 0 {
		return p.tick(ctx, tx, b)
	}
	t := time.Now()
	profiles, err := p.load(ctx, tx, order)
	if err != nil {
		return err
	}
	b.Stage("load", t)
	t = time.Now()
	for _, c := range order {
		prof := profiles[c]
		if prof == nil {
			first := by[c][0]
			// Not in the table: the batch's fence holds its partition's checkpoint, so no
			// other writer can insert it before this transaction ends (store copies it).
			prof = &Profile{CustomerID: c, Partition: first.Partition, absent: true}
			profiles[c] = prof
		}
		for _, e := range by[c] {
			if e.Seq <= prof.Seq {
				return fmt.Errorf("customer360: seq=%d after %d for one customer: out of order", e.Seq, prof.Seq)
			}
			if e.Type == events.TypeEventRetracted {
				history, err := b.History(ctx, c, e.Seq)
				if err != nil {
					return fmt.Errorf("customer360: recompute after retraction seq=%d: %w", e.Seq, err)
				}
				fresh, err := Recompute(c, e.Partition, history, p.opts.Tiers)
				if err != nil {
					return projections.Poison(e, err)
				}
				fresh.phoneChanged = true
				// The partition's clock has not gone back: keep the month it reached.
				fresh.AsOfMonth = max(fresh.AsOfMonth, prof.AsOfMonth)
				fresh.derive(p.opts.Tiers)
				*prof = *fresh
				continue
			}
			payload, err := e.Payload()
			if err != nil {
				return projections.Poison(e, err)
			}
			prof.fold(&e.Event, payload, p.opts.Tiers)
			prof.SeqHash = AddSeq(prof.SeqHash, e.Seq)
			prof.Seq = e.Seq
		}
	}
	b.Stage("fold", t)
	t = time.Now()
	hashes, err := p.phoneHashes(ctx, profiles)
	if err != nil {
		return err
	}
	b.Stage("phone", t)
	if err := p.store(ctx, tx, b, order, profiles, hashes); err != nil {
		return err
	}
	return p.tick(ctx, tx, b)
}

// tick moves the partition's silent customers into the month of the latest clock tick
// of the batch, so that their rolling spend and tier decay in event time. Only a tick
// that starts a new month changes anything; the profiles of the batch's customers were
// already folded and stored.
func (p *Projection) tick(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	months := map[int]valuetier.Month{}
	for _, e := range b.Events {
		if e.Type == events.TypeClockTicked {
			if m := p.opts.Tiers.MonthOf(e.Time); m > months[e.Partition] {
				months[e.Partition] = m
			}
		}
	}
	for part, month := range months {
		for {
			rows, err := tx.Query(ctx, `SELECT doc FROM `+p.table+` WHERE partition = $1 AND as_of_month < $2
				ORDER BY customer_id LIMIT 5000`, int32(part), int32(month))
			if err != nil {
				return fmt.Errorf("customer360 tick: %w", err)
			}
			profiles, order, err := scanProfiles(rows)
			if err != nil {
				return err
			}
			if len(order) == 0 {
				break
			}
			for _, prof := range profiles {
				prof.AsOfMonth = month
				prof.derive(p.opts.Tiers)
			}
			if err := p.store(ctx, tx, nil, order, profiles, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Recompute folds a customer from scratch from its events (in stream order), leaving
// out retracted events and the retractions themselves from every aggregate. They still
// count in EventsTotal and SeqHash, which cover every event of the history.
func Recompute(customer string, partition int, history []*projections.Envelope, tiers valuetier.Config) (*Profile, error) {
	retracted := map[events.EventRef]bool{}
	for _, e := range history {
		if e.Type == events.TypeEventRetracted {
			var r events.EventRetracted
			if err := events.DecodeData(&e.Event, &r); err != nil {
				return nil, err
			}
			retracted[r.Target] = true
		}
	}
	prof := &Profile{CustomerID: customer, Partition: partition}
	for _, e := range history {
		prof.SeqHash = AddSeq(prof.SeqHash, e.Seq)
		if e.Type == events.TypeEventRetracted || retracted[e.Ref()] {
			prof.EventsTotal++
			prof.Seq = e.Seq
			continue
		}
		payload, err := events.Decode(&e.Event)
		if err != nil {
			prof.EventsTotal++ // parked when first met: counted, never folded
			prof.Seq = e.Seq
			continue
		}
		prof.fold(&e.Event, payload, tiers)
		prof.Seq = e.Seq
	}
	prof.derive(tiers)
	return prof, nil
}

func (p *Projection) load(ctx context.Context, tx pgx.Tx, customers []string) (map[string]*Profile, error) {
	rows, err := tx.Query(ctx, `SELECT doc FROM `+p.table+` WHERE customer_id = ANY($1)`, customers)
	if err != nil {
		return nil, fmt.Errorf("customer360 load: %w", err)
	}
	out, _, err := scanProfiles(rows)
	return out, err
}

// scanProfiles decodes rows of doc, returning them by customer and in row order.
func scanProfiles(rows pgx.Rows) (map[string]*Profile, []string, error) {
	defer rows.Close()
	out := map[string]*Profile{}
	var order []string
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, nil, fmt.Errorf("customer360 load: %w", err)
		}
		var prof Profile
		if err := json.Unmarshal(raw, &prof); err != nil {
			return nil, nil, fmt.Errorf("customer360 load: %w", err)
		}
		out[prof.CustomerID] = &prof
		order = append(order, prof.CustomerID)
	}
	return out, order, rows.Err()
}

// phoneHashes derives the search hash of every profile whose phone changed in this
// batch. A nil entry means no hash (no phone, or its key was erased).
func (p *Projection) phoneHashes(ctx context.Context, profiles map[string]*Profile) (map[string][]byte, error) {
	out := map[string][]byte{}
	var kids []string
	for _, prof := range profiles {
		if prof.phoneChanged && prof.Phone != nil && p.opts.Keys != nil {
			kids = append(kids, prof.Phone.KeyID)
		}
	}
	if len(kids) == 0 {
		return out, nil
	}
	keys, err := p.opts.Keys.KeysByID(ctx, kids)
	if err != nil {
		return nil, fmt.Errorf("customer360: data keys for the phone index: %w", err)
	}
	for c, prof := range profiles {
		if !prof.phoneChanged || prof.Phone == nil {
			continue
		}
		key, ok := keys[prof.Phone.KeyID]
		if !ok {
			out[c] = nil // erased
			continue
		}
		phone, err := events.Open(key, "/phone", *prof.Phone)
		if err != nil {
			out[c] = nil
			continue
		}
		out[c] = PhoneHash(p.opts.PhoneKey, phone)
	}
	return out, nil
}

// PhoneHash is the keyed search hash of a phone number, after normalisation: digits
// only, without the +86 country code.
func PhoneHash(key []byte, phone string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(NormalizePhone(phone)))
	return m.Sum(nil)
}

// NormalizePhone keeps the digits of a phone number and drops a leading 86 country
// code from a 13-digit mobile number.
func NormalizePhone(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	d := b.String()
	if len(d) == 13 && strings.HasPrefix(d, "86") {
		d = d[2:]
	}
	return d
}

// profileColumns are the profile table's columns in the order row gives them.
var profileColumns = []string{"customer_id", "partition", "phone_hash", "tier", "lifecycle", "region", "segment",
	"customer_type", "spend_3m_fen", "events_total", "last_event_time", "seq", "doc", "as_of_month",
	"seq_hash", "recharge_total_fen", "lifetime_spend_fen"}

var profileColumnList = strings.Join(profileColumns, ", ")

// upsertChunk bounds the rows of one upsert statement: its array parameters are
// encoded whole in memory, and past a few thousand rows growing them costs more than
// another round trip.
const upsertChunk = 2000

// row is a profile's values in profileColumns order.
func (prof *Profile) row(doc []byte) []any {
	return []any{prof.CustomerID, int32(prof.Partition), prof.PhoneHash, prof.Tier, prof.Lifecycle, prof.Region, prof.Segment,
		prof.CustomerType, prof.Spend3MFen, prof.EventsTotal, prof.LastEventTime, int64(prof.Seq), doc, int32(prof.AsOfMonth),
		prof.SeqHash, prof.RechargeTotalFen, prof.LifetimeSpendFen}
}

// store writes the profiles: the ones the batch found absent from the table with COPY
// (a fresh version, a rebuild, a partition's first events: most rows), the others with
// upserts of at most upsertChunk rows.
func (p *Projection) store(ctx context.Context, tx pgx.Tx, b *projections.Batch, order []string, profiles map[string]*Profile, hashes map[string][]byte) error {
	t := time.Now()
	var fresh [][]any
	var known []*Profile
	var knownDocs [][]byte
	for _, c := range order {
		prof := profiles[c]
		if h, changed := hashes[c]; changed {
			prof.PhoneHash = h
		}
		doc, err := json.Marshal(prof)
		if err != nil {
			return fmt.Errorf("customer360 encode: %w", err)
		}
		if prof.absent {
			fresh = append(fresh, prof.row(doc))
			prof.absent = false // stored: a later write of the same transaction updates it
		} else {
			known, knownDocs = append(known, prof), append(knownDocs, doc)
		}
	}
	b.Stage("encode", t)
	t = time.Now()
	defer b.Stage("upsert", t)
	if len(fresh) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{p.opts.Target, "profiles"}, profileColumns, pgx.CopyFromRows(fresh)); err != nil {
			return fmt.Errorf("customer360 copy %d new profiles: %w", len(fresh), err)
		}
	}
	for i := 0; i < len(known); i += upsertChunk {
		j := min(i+upsertChunk, len(known))
		if err := p.upsert(ctx, tx, known[i:j], knownDocs[i:j]); err != nil {
			return err
		}
	}
	return nil
}

// upsert writes profiles (with their encoded docs) with one multi-row statement.
func (p *Projection) upsert(ctx context.Context, tx pgx.Tx, profs []*Profile, docs [][]byte) error {
	n := len(profs)
	var (
		ids      = make([]string, 0, n)
		parts    = make([]int32, 0, n)
		hash     = make([][]byte, 0, n)
		tier     = make([]string, 0, n)
		life     = make([]string, 0, n)
		region   = make([]string, 0, n)
		segment  = make([]string, 0, n)
		ctype    = make([]string, 0, n)
		spend3   = make([]int64, 0, n)
		total    = make([]int64, 0, n)
		lastTime = make([]time.Time, 0, n)
		seq      = make([]int64, 0, n)
		asOf     = make([]int32, 0, n)
		seqHash  = make([]int64, 0, n)
		recharge = make([]int64, 0, n)
		lifetime = make([]int64, 0, n)
	)
	for _, prof := range profs {
		ids, parts, hash = append(ids, prof.CustomerID), append(parts, int32(prof.Partition)), append(hash, prof.PhoneHash)
		tier, life = append(tier, prof.Tier), append(life, prof.Lifecycle)
		region, segment, ctype = append(region, prof.Region), append(segment, prof.Segment), append(ctype, prof.CustomerType)
		spend3, total = append(spend3, prof.Spend3MFen), append(total, prof.EventsTotal)
		lastTime, seq = append(lastTime, prof.LastEventTime), append(seq, int64(prof.Seq))
		asOf, seqHash = append(asOf, int32(prof.AsOfMonth)), append(seqHash, prof.SeqHash)
		recharge, lifetime = append(recharge, prof.RechargeTotalFen), append(lifetime, prof.LifetimeSpendFen)
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+p.table+` AS t (`+profileColumnList+`)
		SELECT * FROM unnest($1::text[], $2::int[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::bigint[], $10::bigint[], $11::timestamptz[], $12::bigint[], $13::bytea[], $14::int[],
			$15::bigint[], $16::bigint[], $17::bigint[])
		ON CONFLICT (customer_id) DO UPDATE SET
			phone_hash = excluded.phone_hash,
			tier = excluded.tier, lifecycle = excluded.lifecycle, region = excluded.region, segment = excluded.segment,
			customer_type = excluded.customer_type, spend_3m_fen = excluded.spend_3m_fen, events_total = excluded.events_total,
			last_event_time = excluded.last_event_time, seq = excluded.seq, doc = excluded.doc, as_of_month = excluded.as_of_month,
			seq_hash = excluded.seq_hash, recharge_total_fen = excluded.recharge_total_fen, lifetime_spend_fen = excluded.lifetime_spend_fen`,
		ids, parts, hash, tier, life, region, segment, ctype, spend3, total, lastTime, seq, docs, asOf, seqHash, recharge, lifetime)
	if err != nil {
		return fmt.Errorf("customer360 upsert %d profiles: %w", n, err)
	}
	return nil
}

var _ projections.IndexDeferrer = (*Projection)(nil)
