package verify

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
)

// tally is what the log says of one customer.
type tally struct {
	events   int64
	hash     int64 // customer360.SeqHash of the counted sequences
	recharge int64 // recharge.completed - recharge.reversed, fen
	spend    int64 // recharges, reversals, bills and adjustments, fen
}

// money is what one event added to its customer's totals, kept so that a later
// retraction can take it back.
type money struct{ recharge, spend int64 }

type streamSeq struct {
	stream string
	seq    uint64
}

// ledger accumulates the log's view, per partition and customer.
type ledger struct {
	selected  []bool
	upTo      []uint64 // checkpoint per partition
	parked    map[streamSeq]struct{}
	customers []map[string]*tally // by partition
	parkedIn  []int64             // parked events left out, by partition
	// Money events by a 64-bit hash of (customer, source, id), and the events retracted
	// so far, so that retraction and target may come in either order. A collision
	// (about 1 in 10^12 for a million money events) could only hide or invent a
	// difference in the money totals, never in the counts and sequence hashes.
	contributions map[uint64]money
	retracted     map[uint64]struct{}
	seed          maphash.Seed
	read          uint64
}

func newLedger(partitions int, parts []int, cps map[int]projections.Checkpoint, parked map[streamSeq]struct{}) *ledger {
	lg := &ledger{
		selected: make([]bool, partitions), upTo: make([]uint64, partitions), parked: parked,
		customers: make([]map[string]*tally, partitions), parkedIn: make([]int64, partitions),
		contributions: map[uint64]money{}, retracted: map[uint64]struct{}{}, seed: maphash.MakeSeed(),
	}
	for _, p := range parts {
		lg.selected[p], lg.upTo[p] = true, cps[p].Seq
		lg.customers[p] = map[string]*tally{}
	}
	return lg
}

// envelope is the part of a stored event the verifier needs.
type envelope struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	Subject    string          `json:"subject"`
	DataSchema string          `json:"dataschema"`
	Data       json.RawMessage `json:"data"`
}

// add counts one message of partition p.
func (lg *ledger) add(stream string, p int, typ string, seq uint64, data []byte) error {
	if !lg.selected[p] || seq > lg.upTo[p] {
		return nil
	}
	if _, ok := lg.parked[streamSeq{stream, seq}]; ok {
		lg.parkedIn[p]++
		return nil
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		// The runner parks what it cannot decode; this one is not parked.
		return fmt.Errorf("%s seq=%d: applied by the target but not decodable: %w", stream, seq, err)
	}
	if env.Subject == "" {
		return nil // partition-wide
	}
	t := lg.customers[p][env.Subject]
	if t == nil {
		t = &tally{}
		lg.customers[p][env.Subject] = t
	}
	t.events++
	t.hash = customer360.AddSeq(t.hash, seq)
	switch typ {
	case events.TypeRechargeCompleted, events.TypeRechargeReversed, events.TypeBillIssued, events.TypeBillAdjusted,
		events.TypeEventRetracted:
	default:
		return nil
	}
	payload, err := events.Decode(&events.Event{ID: env.ID, Source: env.Source, Type: typ, Subject: env.Subject,
		DataSchema: env.DataSchema, Data: env.Data})
	if err != nil {
		return nil // counted, but the projection cannot fold it either: it changes no total
	}
	var m money
	switch d := payload.(type) {
	case *events.RechargeCompleted:
		m = money{recharge: d.Amount.Fen, spend: d.Amount.Fen}
	case *events.RechargeReversed:
		m = money{recharge: -d.Amount.Fen, spend: -d.Amount.Fen}
	case *events.BillIssued:
		m.spend = d.Amount.Fen
	case *events.BillAdjusted:
		m.spend = d.Amount.Fen
	case *events.EventRetracted:
		k := lg.key(env.Subject, d.Target.Source, d.Target.ID)
		if _, done := lg.retracted[k]; done {
			return nil
		}
		lg.retracted[k] = struct{}{}
		if c, ok := lg.contributions[k]; ok {
			t.recharge -= c.recharge
			t.spend -= c.spend
			delete(lg.contributions, k)
		}
		return nil
	default:
		return nil
	}
	k := lg.key(env.Subject, env.Source, env.ID)
	if _, gone := lg.retracted[k]; gone {
		return nil // retracted before it arrived
	}
	t.recharge += m.recharge
	t.spend += m.spend
	lg.contributions[k] = m
	return nil
}

func (lg *ledger) key(customer, source, id string) uint64 {
	var h maphash.Hash
	h.SetSeed(lg.seed)
	h.WriteString(customer)
	h.WriteByte(0)
	h.WriteString(source)
	h.WriteByte(0)
	h.WriteString(id)
	return h.Sum64()
}

// readLog reads every stream holding selected partitions, each up to the highest
// checkpoint of its partitions.
func (v *Verifier) readLog(ctx context.Context, lg *ledger) error {
	type plan struct {
		stream string
		parts  []int
		upTo   uint64
	}
	var plans []*plan
	byStream := map[string]*plan{}
	for _, p := range v.parts {
		s := v.deps.Layout.Stream(p)
		pl := byStream[s]
		if pl == nil {
			pl = &plan{stream: s}
			byStream[s] = pl
			plans = append(plans, pl)
		}
		pl.parts = append(pl.parts, p)
		pl.upTo = max(pl.upTo, lg.upTo[p])
	}
	// The total for progress: messages up to each stream's highest checkpoint (an upper
	// bound when only some of its partitions are verified).
	var total uint64
	for _, pl := range plans {
		if pl.upTo == 0 {
			continue
		}
		s, err := v.deps.JS.Stream(ctx, pl.stream)
		if err != nil {
			return fmt.Errorf("verify: stream %s: %w", pl.stream, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("verify: stream %s: %w", pl.stream, err)
		}
		if last := min(pl.upTo, info.State.LastSeq); last >= info.State.FirstSeq && info.State.Msgs > 0 {
			total += last - info.State.FirstSeq + 1
		}
	}
	for _, pl := range plans {
		if pl.upTo == 0 {
			continue // nothing applied yet
		}
		if err := v.readStream(ctx, lg, pl.stream, pl.parts, pl.upTo, total); err != nil {
			return err
		}
	}
	return nil
}

// readStream reads one stream with an ordered consumer, from its first message to upTo.
func (v *Verifier) readStream(ctx context.Context, lg *ledger, stream string, parts []int, upTo, total uint64) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: time.Minute}
	if !v.holdsExactly(stream, parts) {
		for _, p := range parts {
			cfg.FilterSubjects = append(cfg.FilterSubjects, v.deps.Layout.PartitionFilter(p))
		}
	}
	cons, err := v.deps.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("verify: ordered consumer on %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("verify: consumer info on %s: %w", stream, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(v.opts.FetchBatch))
	if err != nil {
		return fmt.Errorf("verify: read %s: %w", stream, err)
	}
	defer it.Stop()
	batch := uint64(v.opts.FetchBatch)
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("verify: next message from %s: %w", stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("verify: message metadata from %s: %w", stream, err)
		}
		seq := md.Sequence.Stream
		if seq > upTo {
			break
		}
		lg.read++
		if p, typ, err := v.deps.Layout.ParseSubject(m.Subject()); err == nil {
			if err := lg.add(stream, p, typ, seq, m.Data()); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
		}
		if v.opts.Progress != nil && lg.read%batch == 0 {
			v.opts.Progress(Progress{Stream: stream, Read: lg.read, Total: total})
		}
		if seq == upTo || md.NumPending == 0 {
			break
		}
	}
	if v.opts.Progress != nil {
		v.opts.Progress(Progress{Stream: stream, Read: lg.read, Total: total})
	}
	return nil
}

func (v *Verifier) holdsExactly(stream string, parts []int) bool {
	for _, s := range v.deps.Layout.Streams {
		if s.Name == stream {
			return len(parts) == s.Last-s.First+1
		}
	}
	return false
}
