package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
)

// The JetStream API subjects of stream snapshots and restores (nats-server 2.2+).
const (
	apiSnapshot = "$JS.API.STREAM.SNAPSHOT."
	apiRestore  = "$JS.API.STREAM.RESTORE."
)

// chunkSize is the snapshot and restore chunk: the server's default, well under any
// server's max_payload (1 MiB by default).
const chunkSize = 128 << 10

// chunkIdle bounds the wait for the next snapshot chunk, and for the server's answer
// to one restore chunk. The server itself gives up on a receiver that has not acked
// for 5 s.
const chunkIdle = 30 * time.Second

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (code %d, err_code %d)", e.Description, e.Code, e.ErrCode)
}

// streamState is the part of a stream's state a backup records and a restore checks.
type streamState struct {
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumer_count"`
}

// snapshotted is what the server said of a snapshot before sending it.
type snapshotted struct {
	Config json.RawMessage // the stream's configuration, as the server has it
	State  json.RawMessage // its state at the snapshot point, as the server has it
	state  streamState
}

// snapshotStream writes a snapshot of stream to w through the JetStream API: a
// request on $JS.API.STREAM.SNAPSHOT.<stream> naming an inbox, then the chunks on that
// inbox, each acknowledged on its reply subject (the server sends at most its window
// ahead of the acks), until an empty message whose status says whether it completed.
// The snapshot is of one point of the stream: messages stored meanwhile are not in it.
// started is called with the state the snapshot is of, before the first chunk;
// progress with the bytes written so far.
func snapshotStream(ctx context.Context, nc *nats.Conn, stream string, consumers bool, w io.Writer, progress func(int64), started func(streamState)) (*snapshotted, error) {
	inbox := nc.NewRespInbox()
	// A synchronous subscription queues what arrives (the server sends at most its
	// window, 8 MiB, ahead of the acks): nothing is dropped while a chunk is written.
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: subscribe: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)

	req, _ := json.Marshal(struct {
		DeliverSubject string `json:"deliver_subject"`
		NoConsumers    bool   `json:"no_consumers,omitempty"`
		ChunkSize      int    `json:"chunk_size"`
	}{inbox, !consumers, chunkSize})
	rctx, cancel := context.WithTimeout(ctx, chunkIdle)
	answer, err := nc.RequestWithContext(rctx, apiSnapshot+stream, req)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: request: %w", stream, err)
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(answer.Data, &resp); err != nil {
		return nil, fmt.Errorf("snapshot %s: answer: %w", stream, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("snapshot %s: %w", stream, resp.Error)
	}
	out := &snapshotted{Config: resp.Config, State: resp.State}
	if err := json.Unmarshal(resp.State, &out.state); err != nil {
		return nil, fmt.Errorf("snapshot %s: state: %w", stream, err)
	}
	if started != nil {
		started(out.state)
	}

	var written int64
	for {
		mctx, cancel := context.WithTimeout(ctx, chunkIdle)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("snapshot %s: %w", stream, ctx.Err())
		case err != nil:
			return nil, fmt.Errorf("snapshot %s: waiting for a chunk after %d bytes: %w", stream, written, err)
		}
		if len(m.Data) == 0 {
			// The end: status 204 (or none, for an empty stream) is success.
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return nil, fmt.Errorf("snapshot %s: the server ended it with status %s %s after %d bytes", stream, st, m.Header.Get("Description"), written)
			}
			return out, nil
		}
		if _, err := w.Write(m.Data); err != nil {
			return nil, fmt.Errorf("snapshot %s: write: %w", stream, err)
		}
		written += int64(len(m.Data))
		if progress != nil {
			progress(written)
		}
		// The last, short chunk has no reply subject: nothing to acknowledge.
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return nil, fmt.Errorf("snapshot %s: ack: %w", stream, err)
			}
		}
	}
}

// restoreStream creates stream from a snapshot read from r through the JetStream
// API: a request on $JS.API.STREAM.RESTORE.<stream> with the configuration and state
// the snapshot was taken with, then the bytes in chunks, each a request the server
// answers once it has taken it in, then an empty request answered with the created
// stream's state (or the error). The stream must not exist. progress is called with
// the bytes sent so far.
func restoreStream(ctx context.Context, nc *nats.Conn, stream string, config, state json.RawMessage, r io.Reader, progress func(int64)) (streamState, error) {
	req, _ := json.Marshal(struct {
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}{config, state})
	var st streamState
	answer, err := request(ctx, nc, apiRestore+stream, req, chunkIdle)
	if err != nil {
		return st, fmt.Errorf("restore %s: request: %w", stream, err)
	}
	var resp struct {
		Error          *apiError `json:"error"`
		DeliverSubject string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(answer, &resp); err != nil {
		return st, fmt.Errorf("restore %s: answer: %w", stream, err)
	}
	if resp.Error != nil {
		return st, fmt.Errorf("restore %s: %w", stream, resp.Error)
	}
	br := bufio.NewReaderSize(r, chunkSize)
	buf := make([]byte, chunkSize)
	var sent int64
	for {
		n, rerr := io.ReadFull(br, buf)
		if n > 0 {
			ack, err := request(ctx, nc, resp.DeliverSubject, buf[:n], chunkIdle)
			if err != nil {
				return st, fmt.Errorf("restore %s: chunk at byte %d: %w", stream, sent, err)
			}
			if len(ack) > 0 {
				return st, fmt.Errorf("restore %s: chunk at byte %d: %w", stream, sent, answerError(ack))
			}
			sent += int64(n)
			if progress != nil {
				progress(sent)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return st, fmt.Errorf("restore %s: read snapshot: %w", stream, rerr)
		}
	}
	// The server unpacks and recovers the stream before it answers the end: allow for
	// a large one.
	done, err := request(ctx, nc, resp.DeliverSubject, nil, 10*time.Minute)
	if err != nil {
		return st, fmt.Errorf("restore %s: finish: %w", stream, err)
	}
	var created struct {
		Error *apiError   `json:"error"`
		State streamState `json:"state"`
	}
	if err := json.Unmarshal(done, &created); err != nil {
		return st, fmt.Errorf("restore %s: finish answer: %w", stream, err)
	}
	if created.Error != nil {
		return st, fmt.Errorf("restore %s: %w", stream, created.Error)
	}
	return created.State, nil
}

func request(ctx context.Context, nc *nats.Conn, subject string, data []byte, timeout time.Duration) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, subject, data)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// answerError reads the error of an API answer (any non-empty answer to a chunk).
func answerError(b []byte) error {
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil || resp.Error == nil {
		return fmt.Errorf("unexpected answer %q", truncate(b, 200))
	}
	return resp.Error
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
