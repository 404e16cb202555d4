package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// BatchContentType is the CloudEvents HTTP batch mode media type.
const BatchContentType = "application/cloudevents-batch+json"

// Outcomes of one event, as the gateway answers them.
const (
	StatusStored    = "stored"
	StatusDuplicate = "duplicate"
	StatusRefused   = "refused"
	StatusUnknown   = "unknown"
	StatusFailed    = "failed"
)

// Response is the gateway's answer to a request (the fields the simulator reads).
type Response struct {
	RequestID  string   `json:"request_id"`
	Error      string   `json:"error,omitempty"`
	RetryAfter int      `json:"retry_after,omitempty"`
	Results    []Result `json:"results,omitempty"`
}

// Result is the outcome of one event of a request.
type Result struct {
	Index  int          `json:"index"`
	ID     string       `json:"id,omitempty"`
	Status string       `json:"status"`
	Errors []FieldError `json:"errors,omitempty"`
	Reason string       `json:"reason,omitempty"`
}

// FieldError is why a field of a refused event was refused.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// reply is a request's status code, answer and Retry-After.
type reply struct {
	code       int
	resp       Response
	retryAfter time.Duration
}

// errUnauthorized: the gateway does not know the channel's key. Nothing will ever be
// stored: the run stops.
var errUnauthorized = errors.New("the gateway refused the channel's API key (401)")

// client posts batches to the gateway's HTTP door.
type client struct {
	url  string
	http *http.Client
}

// post sends events as one batch request of a channel.
func (c *client) post(ctx context.Context, ch *Channel, evs []*events.Event, requestID string) (reply, error) {
	size := 2
	for _, e := range evs {
		size += len(e.Data) + 320
	}
	b := append(make([]byte, 0, size), '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.AppendJSON(b)
	}
	b = append(b, ']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(b))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", BatchContentType)
	req.Header.Set("Authorization", "Bearer "+ch.APIKey)
	req.Header.Set("X-Request-Id", requestID)
	res, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return reply{}, fmt.Errorf("read response: %w", err)
	}
	r := reply{code: res.StatusCode}
	if len(bytes.TrimSpace(body)) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(body, &r.resp); err != nil {
			return r, fmt.Errorf("response %d is not the gateway's JSON: %w", res.StatusCode, err)
		}
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
		r.retryAfter = time.Duration(s) * time.Second
	} else if r.resp.RetryAfter > 0 {
		r.retryAfter = time.Duration(r.resp.RetryAfter) * time.Second
	}
	return r, nil
}
