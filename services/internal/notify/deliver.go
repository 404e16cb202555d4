package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignal         = "X-Touchstream-Signal"
	HeaderAttempt        = "X-Touchstream-Delivery-Attempt"
	HeaderSignature      = "X-Touchstream-Signature"
)

// Sign returns the X-Touchstream-Signature value of body at t:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrMalformedSignature = errors.New("malformed signature header")
	ErrStaleSignature     = errors.New("signature timestamp outside the tolerance")
	ErrBadSignature       = errors.New("signature does not match")
)

// Verify checks a delivery for a receiver: header is the X-Touchstream-Signature
// value, body the request body as received, now the receiver's clock. The timestamp
// must be within tolerance of now (either side), and one of the header's v1 values must
// be the HMAC-SHA256 of "<t>.<body>" under secret (compared in constant time). Unknown
// schemes in the header are ignored, so a receiver keeps working when a v2 is added.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %q is not key=value", ErrMalformedSignature, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: two timestamps", ErrMalformedSignature)
			}
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: v1 is not a hex SHA-256 MAC", ErrMalformedSignature)
			}
			sigs = append(sigs, b)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: t and v1 are required", ErrMalformedSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: t %q is not unix seconds", ErrMalformedSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now, tolerance %s", ErrStaleSignature, d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}

// DeliveryError is a failed POST.
type DeliveryError struct {
	Webhook string
	// Status is the HTTP status; 0 for a network error or a timeout.
	Status int
	// Permanent: the receiver refused the signal (a 4xx other than 408 and 429); it
	// is parked without retries.
	Permanent bool
	// RetryAfter is the receiver's Retry-After (429 or 503), capped by MaxInterval;
	// zero when absent.
	RetryAfter time.Duration
	Err        error
}

func (e *DeliveryError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("webhook %s: status %d", e.Webhook, e.Status)
	}
	return fmt.Sprintf("webhook %s: %v", e.Webhook, e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// delivery is one POST of a signal.
type delivery struct {
	id, typ string
	body    []byte
	attempt int
}

// post sends one delivery to hook and classifies the outcome: nil on 2xx, a
// *DeliveryError otherwise.
func (n *Notifier) post(ctx context.Context, hook *endpoint, d delivery) error {
	ctx, cancel := context.WithTimeout(ctx, hook.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(d.body))
	if err != nil {
		return &DeliveryError{Webhook: hook.Name, Permanent: true, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "touchstream-notify/1")
	req.Header.Set(HeaderIdempotencyKey, d.id)
	req.Header.Set(HeaderSignal, d.typ)
	req.Header.Set(HeaderAttempt, strconv.Itoa(d.attempt))
	req.Header.Set(HeaderSignature, Sign(hook.secret, n.cfg.Now(), d.body))
	start := time.Now()
	resp, err := n.cfg.HTTPClient.Do(req)
	n.metrics.latency.WithLabelValues(hook.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		// The URL is left out of the error (logged, stored when parked): a receiver
		// may put a token in it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
		}
		return &DeliveryError{Webhook: hook.Name, Err: err}
	}
	// Drain a little so the connection can be reused; never read an unbounded body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return &DeliveryError{Webhook: hook.Name, Status: code, RetryAfter: n.retryAfter(resp.Header.Get("Retry-After")),
			Err: fmt.Errorf("status %d", code)}
	default:
		// Other 4xx, and 3xx: redirects are not followed (a POST must not turn into a
		// GET elsewhere); a moved endpoint is a configuration change.
		return &DeliveryError{Webhook: hook.Name, Status: code, Permanent: true, Err: fmt.Errorf("status %d", code)}
	}
}

// retryAfter reads a Retry-After value (seconds or an HTTP date), capped at
// MaxInterval; zero when absent or unreadable.
func (n *Notifier) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(n.cfg.Now())
	}
	if d <= 0 {
		return 0
	}
	return min(d, n.cfg.MaxInterval)
}
