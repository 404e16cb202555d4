package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher appends events to the log for trusted producers. It validates and seals
// exactly as the gateway does (they share Door), computes each event's partition and
// sends it with its dedup key as Nats-Msg-Id, bounding the number of unacknowledged
// messages in flight.
//
// Publisher is safe for concurrent use.
type Publisher struct {
	js       jetstream.JetStream
	door     *Door
	source   string
	inflight chan struct{}
	timeout  time.Duration
	now      func() time.Time
	out      *appender

	mu     sync.RWMutex
	closed bool
}

// Result is the outcome of publishing one event.
type Result struct {
	Stream    string // the stream that holds it
	Seq       uint64 // its stream sequence (of the original, for a duplicate)
	Duplicate bool   // an event with the same source and id was already stored
	Err       error  // why it was not stored; see the package's sentinel errors
}

// Option configures a Publisher.
type Option func(*publisherOptions) error

type publisherOptions struct {
	source      string
	layout      Layout
	layoutSet   bool
	keys        KeySource
	validate    bool
	maxInFlight int
	ackTimeout  time.Duration
	limits      Limits
	now         func() time.Time
	catalog     *Catalog
}

// WithSource sets the CloudEvents source stamped on events that have none. A trusted
// producer's NATS identity may publish only its own event types.
func WithSource(source string) Option {
	return func(o *publisherOptions) error {
		var errs FieldErrors
		checkText(&errs, "source", source, 256)
		if err := errs.err(); err != nil {
			return fmt.Errorf("events: WithSource: %w", err)
		}
		o.source = source
		return nil
	}
}

// WithLayout sets the log layout. Without it the publisher reads the layout from the
// metadata of the first stream named by DefaultLayout (written by `touchstream streams
// apply`).
func WithLayout(l Layout) Option {
	return func(o *publisherOptions) error {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("events: WithLayout: %w", err)
		}
		o.layout, o.layoutSet = l, true
		return nil
	}
}

// WithKeys sets the source of data keys for sealing personal fields. Without it,
// events with personal fields are refused with ErrKeyUnavailable: they are never
// written in clear.
func WithKeys(k KeySource) Option {
	return func(o *publisherOptions) error {
		if k == nil {
			return errors.New("events: WithKeys: nil key source")
		}
		o.keys = k
		return nil
	}
}

// WithValidation turns schema and time-bound validation on (the default) or off. With
// it off the envelope, type and subject are still checked and personal fields are
// still sealed; consumers validate again on decode and park what fails.
func WithValidation(on bool) Option {
	return func(o *publisherOptions) error { o.validate = on; return nil }
}

// WithMaxInFlight bounds the unacknowledged messages of PublishBatch (default 4096).
func WithMaxInFlight(n int) Option {
	return func(o *publisherOptions) error {
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("events: WithMaxInFlight(%d): must be between 1 and 1048576", n)
		}
		o.maxInFlight = n
		return nil
	}
}

// WithAckTimeout is how long to wait for the stream's acknowledgement (default 10s).
// An event not acknowledged in time gets ErrAckUnknown (within an eighth of the timeout
// after it, a second at most): publishing it again with the same source and id is
// safe.
func WithAckTimeout(d time.Duration) Option {
	return func(o *publisherOptions) error {
		if d <= 0 {
			return fmt.Errorf("events: WithAckTimeout(%s): must be positive", d)
		}
		o.ackTimeout = d
		return nil
	}
}

// WithLimits sets the size and time limits (DefaultLimits otherwise).
func WithLimits(l Limits) Option {
	return func(o *publisherOptions) error { o.limits = l; return nil }
}

// WithClock sets the clock used for time-bound checks and for stamping events.
func WithClock(now func() time.Time) Option {
	return func(o *publisherOptions) error { o.now = now; return nil }
}

// WithCatalog sets the compiled contract (DefaultCatalog otherwise).
func WithCatalog(c *Catalog) Option {
	return func(o *publisherOptions) error { o.catalog = c; return nil }
}

// NewPublisher returns a publisher over the NATS connection nc.
func NewPublisher(ctx context.Context, nc *nats.Conn, opts ...Option) (*Publisher, error) {
	o := publisherOptions{validate: true, maxInFlight: 4096, ackTimeout: 10 * time.Second, limits: DefaultLimits(), now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("events: jetstream: %w", err)
	}
	if !o.layoutSet {
		if o.layout, err = ReadLayout(ctx, js, DefaultLayout().Streams[0].Name); err != nil {
			return nil, err
		}
	}
	if o.catalog == nil {
		if o.catalog, err = DefaultCatalog(); err != nil {
			return nil, err
		}
	}
	v := NewValidator(o.catalog, o.layout.Partitions, o.limits, o.now)
	out, err := newAppender(nc, o.ackTimeout)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		js:       js,
		door:     NewDoor(o.layout, v, o.keys, o.validate),
		source:   o.source,
		inflight: make(chan struct{}, o.maxInFlight),
		timeout:  o.ackTimeout,
		now:      o.now,
		out:      out,
	}, nil
}

// Publish appends one event and waits for the stream's acknowledgement.
func (p *Publisher) Publish(ctx context.Context, e *Event) (Result, error) {
	r := p.PublishBatch(ctx, []*Event{e})[0]
	return r, r.Err
}

// PublishBatch appends events asynchronously, at most the configured number in flight,
// and returns one Result per event, in order. Events are independent: a refused event
// does not stop the others. Events of one customer are sent in the order given.
//
// A batch is prepared and sent in chunks, each prepared while the ones before it are
// sent and acknowledged (see prepareChunks).
func (p *Publisher) PublishBatch(ctx context.Context, evs []*Event) []Result {
	results := make([]Result, len(evs))
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		for i := range results {
			results[i].Err = ErrClosed
		}
		return results
	}
	for _, e := range evs {
		if e.Source == "" {
			e.Source = p.source
		}
	}
	b := p.newBatch(results)
	if len(evs) <= firstChunk {
		msgs, errs := p.door.Prepare(ctx, evs)
		p.send(ctx, b, 0, msgs, errs)
	} else {
		chunks := make(chan preparedChunk, 1)
		go p.door.prepareChunks(ctx, evs, chunks)
		for c := range chunks {
			p.send(ctx, b, c.off, c.msgs, c.errs)
		}
	}
	b.wait()
	return results
}

// The chunks of a batch: the first small, so that sending starts at once, then each
// twice the one before, up to maxChunk. Keys are requested per group of chunks of at
// least keyGroup events.
const (
	firstChunk = 16
	maxChunk   = 256
	keyGroup   = 250
)

// preparedChunk is events[off:off+len(msgs)] of a batch, prepared.
type preparedChunk struct {
	off  int
	msgs []*Message
	errs []error
}

// keyFetch is one key request of a batch, in flight until ready is closed.
type keyFetch struct {
	ready chan struct{}
	keys  *fetchedKeys
}

// prepareChunks prepares a batch chunk by chunk into out, in order, and closes it.
// Chunks are checked in turn; once a group of them is checked, the keys of its
// customers (those not in an earlier group) are requested, without waiting for the
// answer. A chunk is sealed and encoded, in order, as soon as the keys it needs are in:
// at once if it has no personal fields. So sending starts after the first small
// chunk, and the key requests of a batch run concurrently, overlapping with checking,
// encoding and sending.
func (d *Door) prepareChunks(ctx context.Context, evs []*Event, out chan<- preparedChunk) {
	defer close(out)
	var ends []int // of the chunks
	for end, size := 0, firstChunk; end < len(evs); size = min(2*size, maxChunk) {
		end = min(end+size, len(evs))
		ends = append(ends, end)
	}
	checked := make([]Checked, len(evs))
	errs := make([]error, len(evs))
	needs := make([]*keyFetch, len(ends)) // the request of a chunk's new customers; nil: none
	owner := map[string]*keyFetch{}       // the request for a customer's key
	keyOf := func(customer string) (DataKey, error) {
		f := owner[customer]
		<-f.ready
		return f.keys.of(customer)
	}
	next := 0 // the next chunk to encode
	emit := func(upto int, wait bool) {
		for ; next < upto; next++ {
			if f := needs[next]; f != nil {
				if f.ready == nil {
					return // its group is not complete: not requested yet
				}
				if !wait {
					select {
					case <-f.ready:
					default:
						return
					}
				}
				<-f.ready
			}
			lo := 0
			if next > 0 {
				lo = ends[next-1]
			}
			hi := ends[next]
			msgs := d.encode(evs[lo:hi], checked[lo:hi], errs[lo:hi], keyOf)
			out <- preparedChunk{lo, msgs, errs[lo:hi]}
		}
	}
	group, groupStart := &keyFetch{}, 0
	var customers []string // of the group, new
	for k, hi := range ends {
		lo := 0
		if k > 0 {
			lo = ends[k-1]
		}
		for i := lo; i < hi; i++ {
			errs[i] = d.check(evs[i], &checked[i])
			if errs[i] != nil || !checked[i].Schema.HasPersonal() {
				continue
			}
			if _, ok := owner[evs[i].Subject]; !ok {
				owner[evs[i].Subject] = group
				customers = append(customers, evs[i].Subject)
			}
			needs[k] = group // keys of customers of earlier groups are waited for when encoding
		}
		if hi-groupStart >= keyGroup || hi == len(evs) {
			if len(customers) > 0 {
				f, cs := group, customers
				f.ready = make(chan struct{})
				go func() {
					f.keys = d.fetchKeys(ctx, cs)
					close(f.ready)
				}()
			} else {
				group.ready = make(chan struct{})
				group.keys = &fetchedKeys{}
				close(group.ready)
			}
			group, groupStart, customers = &keyFetch{}, hi, nil
		}
		emit(k+1, false)
	}
	emit(len(ends), true)
}

// batch is one call's messages in flight: the appender fills results and counts down
// to done.
type batch struct {
	p       *Publisher
	results []Result
	left    atomic.Int64
	done    chan struct{}
}

func (p *Publisher) newBatch(results []Result) *batch {
	b := &batch{p: p, results: results, done: make(chan struct{})}
	b.left.Store(1) // the sender's own count, dropped in wait
	return b
}

// release frees the in-flight slot of a message whose outcome is recorded, and counts
// it.
func (b *batch) release() {
	<-b.p.inflight
	b.finish()
}

// finish counts one outcome; the last closes done.
func (b *batch) finish() {
	if b.left.Add(-1) == 0 {
		close(b.done)
	}
}

// send sends prepared messages as results[off:] of b; errs[i] != nil marks message i
// as refused before sending.
func (p *Publisher) send(ctx context.Context, b *batch, off int, msgs []*Message, errs []error) {
	s := newSender()
	for j, m := range msgs {
		i := off + j
		if errs[j] != nil {
			b.results[i].Err = errs[j]
			continue
		}
		select {
		case p.inflight <- struct{}{}:
		case <-ctx.Done():
			b.results[i].Err = fmt.Errorf("%w: %w", ErrAckUnknown, ctx.Err())
			continue
		}
		b.left.Add(1)
		p.out.send(s, b, i, m)
	}
}

// wait returns once every message sent is acknowledged or given up on (after the ack
// timeout at the latest).
func (b *batch) wait() {
	b.finish()
	<-b.done
}

// SendPrepared appends messages prepared by a Door. The gateway prepares with its own
// door (per-channel checks) and sends through a shared publisher.
func (p *Publisher) SendPrepared(ctx context.Context, msgs []*Message, errs []error) []Result {
	results := make([]Result, len(msgs))
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		for i := range results {
			results[i].Err = ErrClosed
		}
		return results
	}
	b := p.newBatch(results)
	p.send(ctx, b, 0, msgs, errs)
	b.wait()
	return results
}

// Door returns the publisher's door, to prepare events ahead of sending.
func (p *Publisher) Door() *Door { return p.door }

// Close waits for batches in progress, refuses new ones and drops the publisher's
// subscription to acknowledgements. It does not close the NATS connection.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.out.close()
	}
	return nil
}

// Payload is the typed data of an event type at a major version.
type Payload interface {
	EventType() string
	SchemaMajor() int
}

// NewEvent builds a customer event from a typed payload, with a fresh UUIDv7 id. The
// source is left empty for the publisher to stamp.
func NewEvent(customerID string, at time.Time, p Payload) (*Event, error) {
	data, err := marshalPayload(p)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("events: mint id: %w", err)
	}
	return &Event{ID: id.String(), Type: p.EventType(), Subject: customerID, Time: at,
		DataSchema: schemaURI(p), Data: data}, nil
}

// NewPartitionEvents builds a partition-wide event once for every partition, all with
// the same id (their dedup keys differ by partition).
func NewPartitionEvents(partitions int, at time.Time, p Payload) ([]*Event, error) {
	data, err := marshalPayload(p)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("events: mint id: %w", err)
	}
	out := make([]*Event, partitions)
	for i := range out {
		out[i] = &Event{ID: id.String(), Type: p.EventType(), Partition: i, Time: at, DataSchema: schemaURI(p), Data: data}
	}
	return out, nil
}
