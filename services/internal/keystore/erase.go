package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
)

// SubjectErase is the key service's erasure request subject. Only the erasure command
// (touchstream erase, the ops identity) may publish on it: whoever can, can shred any
// customer's data.
const SubjectErase = "touchstream.keys.v1.erase"

// Erasure is one customer's erasure: every data key of Customer created at or before
// UpTo (zero: whenever) is deleted.
type Erasure struct {
	Customer string
	UpTo     time.Time
}

// EraseAll erases the keys of several customers in one statement and returns one
// receipt per customer, in the order given (a customer listed twice is erased up to
// the later bound, and gets one receipt). Keys created after a customer's bound are
// kept: they seal data recorded after that erasure. Tombstones already present (a
// key store restored from a backup taken after them) are kept.
func (s *Store) EraseAll(ctx context.Context, es []Erasure) ([]Receipt, error) {
	if len(es) > MaxNames {
		return nil, fmt.Errorf("%w: erasures: %d listed, at most %d per call", ErrInvalidRequest, len(es), MaxNames)
	}
	var fe fieldErrors
	upTo := map[string]*time.Time{}
	var order []string
	for i, e := range es {
		if !events.ValidCustomerID(e.Customer) {
			fe.add(fmt.Sprintf("erasures[%d].customer", i), "not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)")
			continue
		}
		prev, seen := upTo[e.Customer]
		if !seen {
			order = append(order, e.Customer)
		}
		switch {
		case e.UpTo.IsZero():
			upTo[e.Customer] = nil // no bound wins
		case !seen || (prev != nil && e.UpTo.After(*prev)):
			t := e.UpTo
			upTo[e.Customer] = &t
		}
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return nil, nil
	}
	bounds := make([]*time.Time, len(order))
	for i, c := range order {
		bounds[i] = upTo[c]
	}
	var (
		at        time.Time
		customers []string
		keyIDs    []string
	)
	err := s.pool.QueryRow(ctx, `
		WITH req AS (
			SELECT c, t FROM unnest($1::text[], $2::timestamptz[]) AS u(c, t)
		), gone AS (
			DELETE FROM keystore.data_keys d USING req
			WHERE d.customer_id = req.c AND d.created_at <= coalesce(req.t, 'infinity')
			RETURNING d.key_id, d.customer_id
		), tomb AS (
			INSERT INTO keystore.erased_keys (key_id, customer_id) SELECT key_id, customer_id FROM gone
			ON CONFLICT (key_id) DO NOTHING
		)
		SELECT now(), coalesce(array_agg(customer_id ORDER BY customer_id, key_id), '{}'),
			coalesce(array_agg(key_id ORDER BY customer_id, key_id), '{}')
		FROM gone`, order, bounds).Scan(&at, &customers, &keyIDs)
	if err != nil {
		return nil, fmt.Errorf("erase %d customers: %w", len(order), err)
	}
	byCustomer := map[string][]string{}
	for i, c := range customers {
		byCustomer[c] = append(byCustomer[c], keyIDs[i])
	}
	out := make([]Receipt, len(order))
	for i, c := range order {
		ids := byCustomer[c]
		if ids == nil {
			ids = []string{}
		}
		out[i] = Receipt{Customer: c, KeyIDs: ids, ErasedAt: at}
	}
	return out, nil
}

// KeyIDs lists the ids of the customer's data keys that an erasure up to upTo (zero:
// whenever) would delete, without deleting them: what a dry run reports.
func (s *Store) KeyIDs(ctx context.Context, customer string, upTo time.Time) ([]string, error) {
	if !events.ValidCustomerID(customer) {
		return nil, fmt.Errorf("key ids: %w: customer: not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)", ErrInvalidRequest)
	}
	var bound *time.Time
	if !upTo.IsZero() {
		bound = &upTo
	}
	rows, err := s.pool.Query(ctx, `SELECT key_id FROM keystore.data_keys
		WHERE customer_id = $1 AND created_at <= coalesce($2::timestamptz, 'infinity') ORDER BY key_id`, customer, bound)
	if err != nil {
		return nil, fmt.Errorf("key ids of %s: %w", customer, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("key ids of %s: %w", customer, err)
	}
	return ids, nil
}

// EraseRequest asks the key service (SubjectErase) to erase a customer's data keys
// created up to UpTo (zero: whenever). With DryRun it only reports which it would.
type EraseRequest struct {
	Customer string    `json:"customer"`
	UpTo     time.Time `json:"up_to,omitzero"`
	DryRun   bool      `json:"dry_run,omitempty"`
}

// EraseReply answers an EraseRequest: the receipt (with DryRun, KeyIDs lists the keys
// that would be erased and ErasedAt is zero), or Error.
type EraseReply struct {
	Receipt Receipt `json:"receipt"`
	DryRun  bool    `json:"dry_run,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// answerErase serves one EraseRequest.
func (s *Service) answerErase(ctx context.Context, data []byte) (EraseReply, error) {
	var req EraseRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return EraseReply{}, fmt.Errorf("%w: body is not a JSON erase request {customer, up_to?, dry_run?}", ErrInvalidRequest)
	}
	if req.DryRun {
		ids, err := s.store.KeyIDs(ctx, req.Customer, req.UpTo)
		if err != nil {
			return EraseReply{}, err
		}
		return EraseReply{Receipt: Receipt{Customer: req.Customer, KeyIDs: ids}, DryRun: true}, nil
	}
	if !events.ValidCustomerID(req.Customer) {
		return EraseReply{}, fmt.Errorf("%w: customer: not a valid customer id (1 to 64 of A-Z a-z 0-9 _ -)", ErrInvalidRequest)
	}
	rs, err := s.store.EraseAll(ctx, []Erasure{{Customer: req.Customer, UpTo: req.UpTo}})
	if err != nil {
		return EraseReply{}, err
	}
	s.log.Info("customer's data keys erased", "customer_id", req.Customer, "keys", len(rs[0].KeyIDs))
	return EraseReply{Receipt: rs[0]}, nil
}

// eraseJob answers a request on SubjectErase, with the same error policy as answer.
func (s *Service) eraseJob(ctx context.Context, j job) (EraseReply, string) {
	if n := len(j.msg.Data); n > MaxRequestBytes {
		return EraseReply{Error: fmt.Sprintf("%s: request is %d bytes, at most %d", ErrInvalidRequest, n, MaxRequestBytes)}, OutcomeInvalid
	}
	reply, err := s.answerErase(ctx, j.msg.Data)
	switch {
	case err == nil:
		return reply, OutcomeOK
	case errors.Is(err, ErrInvalidRequest):
		return EraseReply{Error: err.Error()}, OutcomeInvalid
	default:
		ref := newRef()
		s.log.Error("erase request failed", "subject", j.subject, "ref", ref, "error", err)
		return EraseReply{Error: "key service internal error (ref " + ref + ")"}, OutcomeError
	}
}

// EraseClient asks the key service to erase customers' keys over NATS.
type EraseClient struct {
	NC      *nats.Conn
	Timeout time.Duration // default 10s
}

// ErrNoKeyService: no key service answers on SubjectErase.
var ErrNoKeyService = errors.New("no key service answers")

// Erase erases the customer's keys created up to upTo (zero: whenever), or with dryRun
// reports which it would.
func (c *EraseClient) Erase(ctx context.Context, customer string, upTo time.Time, dryRun bool) (Receipt, error) {
	body, err := json.Marshal(EraseRequest{Customer: customer, UpTo: upTo, DryRun: dryRun})
	if err != nil {
		return Receipt{}, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.NC.RequestWithContext(ctx, SubjectErase, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return Receipt{}, fmt.Errorf("erase keys of %s: %w on %s", customer, ErrNoKeyService, SubjectErase)
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("erase keys of %s: %w", customer, err)
	}
	var reply EraseReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return Receipt{}, fmt.Errorf("erase keys of %s: bad reply: %w", customer, err)
	}
	if reply.Error != "" {
		return Receipt{}, fmt.Errorf("erase keys of %s: key service: %s", customer, reply.Error)
	}
	if reply.Receipt.Customer != customer || reply.DryRun != dryRun {
		return Receipt{}, fmt.Errorf("erase keys of %s: the reply is for another request", customer)
	}
	if reply.Receipt.KeyIDs == nil {
		reply.Receipt.KeyIDs = []string{}
	}
	return reply.Receipt, nil
}
