package outbox

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
)

// Schema is the PostgreSQL schema of the outbox: tables signals (the messages) and
// signals_offsets (each forwarder group's position).
const Schema = "outbox"

// topic is the watermill topic of the outbox. Every signal type shares one table; the
// forwarder derives the NATS subject from the signal's type.
const topic = "signals"

// Metadata keys of an outbox message.
const (
	metaType      = "signal_type"
	metaEmittedAt = "emitted_at"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the outbox tables (schema "outbox"). A projection that emits calls
// it from its own Migrate; the Forwarder calls it when it starts.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "outbox", Schema, migrations, "migrations")
}

// schemaAdapter and offsetsAdapter bind watermill-sql's PostgreSQL layout to the
// tables that Migrate creates.
var (
	schemaAdapter = wsql.DefaultPostgreSQLSchema{
		GenerateMessagesTableName: func(string) string { return `"outbox"."signals"` },
		SubscribeBatchSize:        500,
	}
	offsetsAdapter = wsql.DefaultPostgreSQLOffsetsAdapter{
		GenerateMessagesOffsetsTableName: func(string) string { return `"outbox"."signals_offsets"` },
	}
)

// Signal is a fact derived by a projection (a tier change, an overdraft, a churn
// alert, an SLA breach). It carries ids, codes, numbers and reasons, never personal
// data.
type Signal struct {
	// ID is deterministic (NewID): the same fact always has the same id. It is the
	// NATS Nats-Msg-Id, and consumers deduplicate on it.
	ID string `json:"id"`
	// Type is dot-separated lowercase tokens ("loyalty.tier_changed"); the signal is
	// published on signals.<type>.
	Type string `json:"type"`
	// Customer is the operator's opaque customer id.
	Customer  string `json:"customer"`
	Partition int    `json:"partition"`
	// Time is the event time of the cause.
	Time     time.Time       `json:"time"`
	CausedBy events.EventRef `json:"caused_by"`
	// Seq is the stream sequence of the cause.
	Seq uint64 `json:"seq"`
	// Target is the projection version that emitted it ("loyalty_v1").
	Target string          `json:"target"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// namespace is the UUIDv5 namespace of signal ids.
var namespace = uuid.MustParse("6f2b8c1e-5d0a-4c3f-9e1b-7a4d2c8e0f51")

// NewID derives a signal's id: a UUIDv5 over the signal type, the causing event's
// source and id, and a discriminator that tells apart signals of one type caused by one
// event (for example the tier moved to); empty when there is one. Each part is length
// prefixed, so no two different inputs share an id.
func NewID(typ string, cause events.EventRef, discriminator string) string {
	var b []byte
	for _, s := range []string{typ, cause.Source, cause.ID, discriminator} {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return uuid.NewSHA1(namespace, b).String()
}

// NewSignal builds the signal of type typ caused by e, emitted by target, with data
// marshalled to JSON and its id from NewID.
func NewSignal(typ string, e *projections.Envelope, target, discriminator string, data any) (Signal, error) {
	cause := events.EventRef{Source: e.Source, ID: e.ID}
	s := Signal{
		ID: NewID(typ, cause, discriminator), Type: typ, Customer: e.Customer(), Partition: e.Partition,
		Time: e.Time, CausedBy: cause, Seq: e.Seq, Target: target,
	}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return Signal{}, fmt.Errorf("signal %s data: %w", typ, err)
		}
		s.Data = b
	}
	return s, s.Validate()
}

var (
	typePattern     = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)+$`)
	customerPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate checks the signal; each error names the field and the reason.
func (s Signal) Validate() error {
	var errs []error
	switch {
	case s.ID == "":
		errs = append(errs, errors.New("id: empty"))
	case len(s.ID) > 36:
		errs = append(errs, fmt.Errorf("id: %d characters, at most 36", len(s.ID)))
	}
	switch {
	case s.Type == "":
		errs = append(errs, errors.New("type: empty"))
	case !typePattern.MatchString(s.Type):
		errs = append(errs, fmt.Errorf("type %q: must be dot-separated tokens of [a-z0-9_], at least two", s.Type))
	}
	switch {
	case s.Customer == "":
		errs = append(errs, errors.New("customer: empty"))
	case !customerPattern.MatchString(s.Customer):
		errs = append(errs, errors.New("customer: not an operator customer id ([A-Za-z0-9_-], at most 64)"))
	}
	if s.Partition < 0 {
		errs = append(errs, fmt.Errorf("partition %d: negative", s.Partition))
	}
	if s.Time.IsZero() {
		errs = append(errs, errors.New("time: zero (the cause's event time)"))
	}
	if s.CausedBy.Source == "" || s.CausedBy.ID == "" {
		errs = append(errs, errors.New("caused_by: source and id are required"))
	}
	if s.Target == "" {
		errs = append(errs, errors.New("target: empty"))
	}
	if len(s.Data) > 0 && !json.Valid(s.Data) {
		errs = append(errs, errors.New("data: not valid JSON"))
	}
	if err := errors.Join(errs...); err != nil {
		if s.ID == "" {
			return fmt.Errorf("signal: %w", err)
		}
		return fmt.Errorf("signal %s: %w", s.ID, err)
	}
	return nil
}

// maxPerInsert bounds the rows of one INSERT (three parameters a row, PostgreSQL
// allows 65535).
const maxPerInsert = 5000

// Emit writes signals to the outbox inside tx, the caller's batch transaction: they
// reach SIGNALS if and only if tx commits. Rows are written by watermill-sql's
// Publisher bound to tx, one multi-row INSERT per 5,000 signals. Emit validates every
// signal first and writes nothing if one is invalid.
func Emit(ctx context.Context, tx pgx.Tx, sigs ...Signal) error {
	if len(sigs) == 0 {
		return nil
	}
	msgs := make([]*message.Message, len(sigs))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, s := range sigs {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("emit: %w", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("emit signal %s: %w", s.ID, err)
		}
		m := message.NewMessage(s.ID, b)
		m.Metadata.Set(metaType, s.Type)
		m.Metadata.Set(metaEmittedAt, now)
		m.SetContext(ctx)
		msgs[i] = m
	}
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: schemaAdapter}, nil)
	if err != nil {
		return fmt.Errorf("emit: %w", err)
	}
	defer pub.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), maxPerInsert)
		if err := pub.Publish(topic, msgs[:n]...); err != nil {
			return fmt.Errorf("emit %d signals: %w", n, err)
		}
		msgs = msgs[n:]
	}
	return nil
}

// Record writes signals into a projection version's own signals table
// (<target>.signals: id, customer_id, type, at, seq, data; a signal already there is
// kept) and, when forward is set, into the outbox, all in the caller's transaction.
func Record(ctx context.Context, tx pgx.Tx, target string, forward bool, sigs ...Signal) error {
	if len(sigs) == 0 {
		return nil
	}
	var ids, custs, types []string
	var ats []time.Time
	var seqs []int64
	var data [][]byte
	for _, s := range sigs {
		ids, custs, types = append(ids, s.ID), append(custs, s.Customer), append(types, s.Type)
		ats, seqs, data = append(ats, s.Time), append(seqs, int64(s.Seq)), append(data, s.Data)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{target}.Sanitize()+`.signals (id, customer_id, type, at, seq, data)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::jsonb[]) ON CONFLICT (id) DO NOTHING`,
		ids, custs, types, ats, seqs, data); err != nil {
		return fmt.Errorf("record signals in %s: %w", target, err)
	}
	if forward {
		return Emit(ctx, tx, sigs...)
	}
	return nil
}
