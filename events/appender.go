package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// appender sends messages to the log asynchronously and hands each outcome to the
// batch that sent it. It speaks JetStream's publish protocol over core NATS as
// jetstream's PublishMsgAsync does (a message with a reply subject, answered with a
// PubAck or an API error), made lean for batches: one wildcard reply subscription,
// reply subjects numbered in sequence, one header reused per sender, acknowledgements
// read without reflection, and deadlines checked per batch rather than with a timer
// per message. The outcomes are those of PublishMsgAsync:
//
//   - a PubAck: stored, or a duplicate of a stored event;
//   - an API error: refused, not stored (ErrStreamRefused);
//   - no responders (no stream bound to the subject, as during a leader change): sent
//     again twice, 250ms apart, then ErrAckUnknown;
//   - no answer within the ack timeout, the connection lost while waiting, or a send
//     that failed: ErrAckUnknown.
type appender struct {
	nc      *nats.Conn
	prefix  string // of reply subjects: an inbox of the connection and a dot
	sub     *nats.Subscription
	status  chan nats.Status
	timeout time.Duration
	start   time.Time // deadlines are durations since
	stop    chan struct{}
	seq     atomic.Uint64 // the last reply token handed out

	mu      sync.Mutex
	pending map[uint64]pendingMsg // by reply token
	due     []dueMsg              // pending messages in the order sent, first due first
	head    int                   // due[:head] is done with
	streams []string              // names seen in acknowledgements, to reuse
}

// pendingMsg is a message sent and not yet answered.
type pendingMsg struct {
	b     *batch
	i     int // in b
	m     *Message
	tries int           // sends after the first, on no responders
	due   time.Duration // when to give up on it, since start
}

// dueMsg is when a message is due; a later send (after no responders) makes it stale.
type dueMsg struct {
	tok uint64
	due time.Duration
}

// Resends on no responders, as jetstream's defaults.
const (
	resendAttempts = 2
	resendWait     = 250 * time.Millisecond
)

func newAppender(nc *nats.Conn, timeout time.Duration) (*appender, error) {
	a := &appender{nc: nc, prefix: nc.NewInbox() + ".", timeout: timeout, start: time.Now(), stop: make(chan struct{}),
		pending: map[uint64]pendingMsg{}}
	sub, err := nc.Subscribe(a.prefix+"*", a.answered)
	if err != nil {
		return nil, fmt.Errorf("events: subscribe to acknowledgements: %w", err)
	}
	// The in-flight bound limits what may queue; the subscription must never drop.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("events: subscribe to acknowledgements: %w", err)
	}
	a.sub = sub
	a.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	go a.watch(min(max(timeout/8, 10*time.Millisecond), time.Second))
	return a, nil
}

// watch gives up on the messages not answered in time, checking every interval, and
// on all of them when the connection is lost: their acknowledgements may never come.
// It returns when the appender is closed or the connection is.
func (a *appender) watch(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case s, ok := <-a.status:
			if !ok {
				return
			}
			a.failAll(fmt.Errorf("connection %s", s))
			if s == nats.CLOSED {
				return
			}
		case <-t.C:
			a.expire()
		}
	}
}

// close stops the appender once nothing is in flight.
func (a *appender) close() {
	close(a.stop)
	a.nc.RemoveStatusListener(a.status)
	_ = a.sub.Unsubscribe()
}

// sender is one goroutine's reusable message: nats.Conn.PublishMsg keeps nothing of it.
type sender struct {
	msg nats.Msg
	id  []string
}

func newSender() *sender {
	s := &sender{id: make([]string, 1)}
	s.msg.Header = nats.Header{jetstream.MsgIDHeader: s.id}
	return s
}

// send sends m as message i of b, which the caller has counted in b.left and for
// which it holds an in-flight slot.
func (a *appender) send(s *sender, b *batch, i int, m *Message) {
	tok := a.seq.Add(1)
	due := time.Since(a.start) + a.timeout
	a.mu.Lock()
	a.pending[tok] = pendingMsg{b: b, i: i, m: m, due: due}
	a.due = append(a.due, dueMsg{tok, due})
	a.mu.Unlock()
	if err := a.write(s, tok, m); err != nil {
		a.resolve(tok, Result{Err: classifyPublishError(err)})
	}
}

func (a *appender) write(s *sender, tok uint64, m *Message) error {
	s.msg.Subject, s.msg.Reply, s.msg.Data = m.Subject, a.prefix+strconv.FormatUint(tok, 36), m.Body
	s.id[0] = m.DedupKey
	err := a.nc.PublishMsg(&s.msg)
	s.msg.Data = nil
	return err
}

// resolve records the outcome of message tok if it is still pending.
func (a *appender) resolve(tok uint64, r Result) {
	a.mu.Lock()
	pm, ok := a.pending[tok]
	delete(a.pending, tok)
	a.mu.Unlock()
	if ok {
		pm.b.results[pm.i] = r
		pm.b.release()
	}
}

// answered handles a reply: an acknowledgement, an API error or no responders.
func (a *appender) answered(m *nats.Msg) {
	tok, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 36, 64)
	if err != nil {
		return
	}
	if len(m.Data) == 0 {
		// A status reply, as nats.go reads them: the header "Status" (and "Description").
		if m.Header.Get("Status") == "503" {
			a.noResponders(tok)
			return
		}
		a.resolve(tok, Result{Err: classifyPublishError(fmt.Errorf("reply status %q %q", m.Header.Get("Status"), m.Header.Get("Description")))})
		return
	}
	stream, seq, dup, err := a.readAck(m.Data)
	if err != nil {
		a.resolve(tok, Result{Err: classifyPublishError(err)})
		return
	}
	a.resolve(tok, Result{Stream: stream, Seq: seq, Duplicate: dup})
}

// noResponders sends message tok again after resendWait, at most resendAttempts times,
// then gives up on it.
func (a *appender) noResponders(tok uint64) {
	a.mu.Lock()
	pm, ok := a.pending[tok]
	retry := ok && pm.tries < resendAttempts
	if retry {
		pm.tries++
		a.pending[tok] = pm
	}
	a.mu.Unlock()
	switch {
	case !ok:
	case !retry:
		a.resolve(tok, Result{Err: classifyPublishError(errNoResponders)})
	default:
		time.AfterFunc(resendWait, func() {
			a.mu.Lock()
			pm, ok := a.pending[tok]
			if ok { // the deadline restarts
				pm.due = time.Since(a.start) + a.timeout
				a.pending[tok] = pm
				a.due = append(a.due, dueMsg{tok, pm.due})
			}
			a.mu.Unlock()
			if ok {
				if err := a.write(newSender(), tok, pm.m); err != nil {
					a.resolve(tok, Result{Err: classifyPublishError(err)})
				}
			}
		})
	}
}

// expire gives up on the messages not answered by their deadline.
func (a *appender) expire() {
	now := time.Since(a.start)
	var late []pendingMsg
	a.mu.Lock()
	for ; a.head < len(a.due); a.head++ {
		d := a.due[a.head]
		pm, ok := a.pending[d.tok]
		if !ok || pm.due != d.due {
			continue // answered, or sent again and due later
		}
		if d.due > now {
			break
		}
		delete(a.pending, d.tok)
		late = append(late, pm)
	}
	if a.head > 1024 && a.head > len(a.due)/2 {
		a.due = append(a.due[:0], a.due[a.head:]...)
		a.head = 0
	}
	a.mu.Unlock()
	for _, pm := range late {
		pm.b.results[pm.i] = Result{Err: fmt.Errorf("%w after %s", ErrAckUnknown, a.timeout)}
		pm.b.release()
	}
}

// readAck reads an acknowledgement: {"stream":"S","seq":N} with "duplicate": true for
// a duplicate ("domain" aside). Anything else, an error above all, is decoded as
// jetstream decodes it.
func (a *appender) readAck(data []byte) (string, uint64, bool, error) {
	doc := docPool.Get().(*jsonDoc)
	defer releaseDoc(doc)
	if parseJSON(doc, data) && doc.plain && doc.nodes[0].kind == jsonObject {
		var stream []byte
		var seq uint64
		var dup, ok = false, true
		j := 1
		for range doc.nodes[0].members {
			v := j + 1
			n := &doc.nodes[v]
			switch string(doc.bytes(j)) {
			case "stream":
				ok = ok && n.kind == jsonString && !n.escaped
				stream = doc.bytes(v)
			case "seq":
				var err error
				ok = ok && n.kind == jsonNumber && n.integer
				if ok {
					seq, err = strconv.ParseUint(string(doc.bytes(v)), 10, 64)
					ok = err == nil
				}
			case "duplicate":
				ok = ok && (n.kind == jsonTrue || n.kind == jsonFalse)
				dup = n.kind == jsonTrue
			case "domain":
			default:
				ok = false
			}
			j = v + int(n.size)
		}
		if ok && len(stream) > 0 {
			return a.streamName(stream), seq, dup, nil
		}
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		jetstream.PubAck
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", 0, false, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return "", 0, false, r.Error
	}
	if r.Stream == "" {
		return "", 0, false, jetstream.ErrInvalidJSAck
	}
	return r.Stream, r.Sequence, r.Duplicate, nil
}

// streamName returns name as a string, the same one each time.
func (a *appender) streamName(name []byte) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.streams {
		if s == string(name) {
			return s
		}
	}
	s := string(name)
	if len(a.streams) < 64 {
		a.streams = append(a.streams, s)
	}
	return s
}

// failAll gives up on every message in flight.
func (a *appender) failAll(cause error) {
	a.mu.Lock()
	lost := make([]pendingMsg, 0, len(a.pending))
	for tok, pm := range a.pending {
		lost = append(lost, pm)
		delete(a.pending, tok)
	}
	a.mu.Unlock()
	for _, pm := range lost {
		pm.b.results[pm.i] = Result{Err: fmt.Errorf("%w: %w", ErrAckUnknown, cause)}
		pm.b.release()
	}
}

var errNoResponders = errors.New("no stream answered (no responders)")
