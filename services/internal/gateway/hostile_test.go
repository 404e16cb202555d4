package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

// TestHostileInputs sends what an attacker or a broken channel system sends, through
// the gateway's real http.Server, and checks each answer: its status and the reason,
// naming the field. Nothing of it is stored, and no answer quotes a personal value.
func TestHostileInputs(t *testing.T) {
	e := newEnv(t, envOpts{serve: true, cfg: func(c *gateway.Config) {
		c.MaxBodyBytes = 16 << 10
		c.MaxBatch = 3
		c.MaxHeaderBytes = 8 << 10
	}})
	reg := string(mustJSON(t, registeredEvent(storeSrc, "h-1", "C-1")))
	rch := string(mustJSON(t, rechargeEvent(storeSrc, "h-2", "C-1", 100)))
	// with replaces the first occurrence of old in a valid event.
	with := func(ev, old, new string) []byte {
		if !strings.Contains(ev, old) {
			t.Fatalf("%q not in %s", old, ev)
		}
		return []byte(strings.Replace(ev, old, new, 1))
	}
	fen := `"fen":100`
	name := `"name":"` + clearName + `"`
	idNum := `"id_number":"` + clearIDNum + `"`
	deep := strings.Repeat(`{"a":`, gateway.MaxDepth) + `1` + strings.Repeat(`}`, gateway.MaxDepth)

	tests := []struct {
		name   string
		ct     string
		key    string
		header map[string]string
		body   []byte
		// The answer: its status, and the request's error or the first event's error.
		wantCode   int
		wantError  string
		wantField  string
		wantReason string
	}{
		{name: "duplicate key", body: with(rch, fen, `"fen":100,"fen":1`),
			wantCode: 422, wantField: "/data/amount/fen", wantReason: "the key appears more than once in its object"},
		{name: "duplicate attribute", body: with(rch, `"id":"h-2"`, `"id":"h-2","id":"h-3"`),
			wantCode: 422, wantField: "/id", wantReason: "the key appears more than once in its object"},
		{name: "deep nesting", body: with(rch, `"method":"wechat_pay"`, `"method":"wechat_pay","x":`+deep),
			wantCode: 422, wantField: "/data/x" + strings.Repeat("/a", gateway.MaxDepth-2), wantReason: "nested deeper than 32 levels"},
		{name: "a number beyond a float", body: with(rch, fen, `"fen":1e400`),
			wantCode: 422, wantField: "/data/amount/fen", wantReason: "number out of the range of a 64-bit float"},
		{name: "an integer beyond 2^53", body: with(rch, fen, `"fen":9007199254740993`),
			wantCode: 422, wantField: "/data/amount/fen", wantReason: "integer beyond ±2^53"},
		{name: "a huge negative integer", body: with(rch, fen, `"fen":-99999999999999999999999999`),
			wantCode: 422, wantField: "/data/amount/fen", wantReason: "integer beyond ±2^53"},
		{name: "invalid UTF-8 in a personal field", body: with(reg, name, "\"name\":\"\xe5\xbc\xa0\xff\xfe\""),
			wantCode: 422, wantField: "/data/name", wantReason: "not valid UTF-8 (byte 0xff)"},
		{name: "invalid UTF-8 in an attribute", body: with(rch, `"subject":"C-1"`, "\"subject\":\"C-\xc0\""),
			wantCode: 422, wantField: "/subject", wantReason: "not valid UTF-8"},
		{name: "lone surrogate", body: with(reg, name, `"name":"\ud83d`+clearName+`"`),
			wantCode: 422, wantField: "/data/name", wantReason: `lone UTF-16 surrogate escape (\ud83d)`},
		{name: "lone low surrogate", body: with(reg, name, `"name":"\udc00"`),
			wantCode: 422, wantField: "/data/name", wantReason: "lone UTF-16 surrogate"},
		{name: "escaped NUL", body: with(reg, idNum, `"id_number":"`+clearIDNum+`\u0000"`),
			wantCode: 422, wantField: "/data/id_number", wantReason: `a NUL character (\u0000) is not allowed`},
		{name: "trailing garbage", body: []byte(rch + `{"id":"x"}`),
			wantCode: 400, wantError: "trailing data after the JSON value at byte"},
		{name: "trailing text", body: []byte(rch + " " + clearPhone),
			wantCode: 400, wantError: "trailing data after the JSON value at byte"},
		{name: "truncated", body: []byte(rch[:len(rch)/2]),
			wantCode: 400, wantError: "body is not valid JSON: unexpected end of input"},
		{name: "not an object", body: []byte(`"` + clearPhone + `"`),
			wantCode: 400, wantError: "structured mode carries one event as a JSON object"},
		{name: "huge partition", body: with(rch, `"subject":"C-1"`, `"partition":1e400`),
			wantCode: 422, wantField: "/partition", wantReason: "number out of the range"},
		{name: "a batch with one hostile event", ct: ctBatch, body: []byte(`[` + rch + `,` + string(with(reg, idNum, `"id_number":"\udfff"`)) + `]`),
			wantCode: 207, wantField: "/data/id_number", wantReason: "lone UTF-16 surrogate"},
		{name: "binary mode, duplicate key in the data", ct: ctBinary, header: map[string]string{
			"ce-specversion": "1.0", "ce-id": "h-b", "ce-source": storeSrc, "ce-type": rechargeType, "ce-subject": "C-1", "ce-time": now(),
			"ce-dataschema": "https://touchstream.dev/schemas/recharge.completed/v1"},
			body:     []byte(`{"recharge_id":"R","amount":{"fen":1,"currency":"CNY","currency":"USD"},"method":"cash"}`),
			wantCode: 422, wantField: "/data/amount/currency", wantReason: "the key appears more than once"},
		{name: "binary mode, NUL in the data", ct: ctBinary, header: map[string]string{
			"ce-specversion": "1.0", "ce-id": "h-c", "ce-source": storeSrc, "ce-type": rechargeType, "ce-subject": "C-1", "ce-time": now(),
			"ce-dataschema": "https://touchstream.dev/schemas/recharge.completed/v1"},
			body:     []byte(`{"recharge_id":"R\u0000","amount":{"fen":1,"currency":"CNY"},"method":"cash"}`),
			wantCode: 422, wantField: "/data/recharge_id", wantReason: "NUL character"},
		{name: "body over the limit", body: with(rch, fen, `"pad":"`+strings.Repeat("x", 17<<10)+`",`+fen),
			wantCode: 413, wantError: "the limit is 16384"},
		{name: "batch over the count", ct: ctBatch, body: []byte(`[` + rch + `,` + rch + `,` + rch + `,` + rch + `]`),
			wantCode: 413, wantError: "batch of 4 events: the limit is 3"},
		{name: "headers over the limit", header: map[string]string{"X-Padding": strings.Repeat("p", 16<<10)}, body: []byte(rch),
			wantCode: 431},
		{name: "unknown channel key", key: "dev-nobody-key", body: []byte(rch),
			wantCode: 401, wantError: "unknown API key"},
		{name: "an unknown extension attribute is accepted, not kept", body: with(strings.Replace(rch, `"id":"h-2"`, `"id":"h-3"`, 1), `"source":"`+storeSrc+`"`, `"source":"`+storeSrc+`","x":1`),
			wantCode: 200},
		{name: "another channel's source", body: with(rch, storeSrc, rechargeSrc),
			wantCode: 403, wantField: "/source", wantReason: "channel store writes only under its own source"},
		{name: "a single-producer type", body: with(rch, `"type":"recharge.completed"`, `"type":"points.redeemed"`),
			wantCode: 403, wantField: "/type", wantReason: "channel store may not write this type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ct
			if ct == "" {
				ct = ctStructured
			}
			key := tt.key
			if key == "" {
				key = storeKey
			}
			r := postRaw(t, e.url, key, ct, tt.body, tt.header)
			code, raw := r.code, r.raw
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %.400s", code, tt.wantCode, raw)
			}
			if bytes.Contains(raw, []byte(clearIDNum)) || bytes.Contains(raw, []byte(clearName)) || bytes.Contains(raw, []byte("13912345678")) {
				t.Errorf("the answer quotes a personal value: %s", raw)
			}
			if code == http.StatusRequestHeaderFieldsTooLarge {
				return // answered by net/http before the gateway sees the request
			}
			var got gateway.Response
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, raw)
			}
			if !strings.Contains(got.Error, tt.wantError) {
				t.Errorf("error %q, want it to contain %q", got.Error, tt.wantError)
			}
			if tt.wantField == "" {
				return
			}
			var errs []string
			for _, r := range got.Results {
				for _, fe := range r.Errors {
					errs = append(errs, fe.Field+": "+fe.Reason)
					if fe.Field == tt.wantField && strings.Contains(fe.Reason, tt.wantReason) {
						return
					}
				}
			}
			t.Errorf("errors %q, want %s: ...%s...", errs, tt.wantField, tt.wantReason)
		})
	}
	// Only the two events meant to pass were stored (the batch's first and the one
	// with an unknown extension attribute, which is accepted and not kept).
	if got := e.msgCount(t); got != 2 {
		t.Errorf("stream holds %d messages, want 2", got)
	}
}

// TestSlowClients holds connections open the way slowloris does, over raw TCP: the
// gateway hangs up on headers that do not arrive within HeaderTimeout and answers 408
// to a body that does not arrive within BodyTimeout, and keeps serving others.
func TestSlowClients(t *testing.T) {
	e := newEnv(t, envOpts{serve: true, cfg: func(c *gateway.Config) {
		c.HeaderTimeout = 300 * time.Millisecond
		c.BodyTimeout = 300 * time.Millisecond
	}})
	dial := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// dribble writes one header line at a time, 100ms apart, for up to 10 seconds, and
	// reports whether the server closed the connection meanwhile.
	dribble := func(c net.Conn) (closed bool) {
		if _, err := io.WriteString(c, "POST /v1/events HTTP/1.1\r\nHost: gateway\r\n"); err != nil {
			return true
		}
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
		}()
		for range 100 {
			select {
			case <-gone:
				return true
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := io.WriteString(c, "X-Slow: a\r\n"); err != nil {
				return true
			}
		}
		return false
	}

	t.Run("headers that never end", func(t *testing.T) {
		if !dribble(dial(t)) {
			t.Fatal("the gateway kept a connection whose headers never ended for 10s")
		}
	})
	t.Run("a body that does not arrive", func(t *testing.T) {
		c := dial(t)
		body := mustJSON(t, rechargeEvent(storeSrc, "slow-1", "C-1", 100))
		head := "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: " + ctStructured + "\r\nAuthorization: Bearer " + storeKey +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(body[:10]); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a body that stopped: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var got gateway.Response
		if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal(raw, &got) != nil || !strings.Contains(got.Error, "did not arrive within 300ms") {
			t.Fatalf("status %d %s, want 408 naming the body timeout", resp.StatusCode, raw)
		}
		// The connection is closed after it: the rest of the body is never read.
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("read after the 408: %v, want EOF", err)
		}
	})
	t.Run("others are served meanwhile", func(t *testing.T) {
		for range 3 {
			go dribble(dial(t))
		}
		if got := e.post(t, storeKey, ctStructured, mustJSON(t, rechargeEvent(storeSrc, "slow-2", "C-1", 100)), nil); got.code != http.StatusOK {
			t.Fatalf("status %d: %s", got.code, got.raw)
		}
	})
}

// TestDeployedRateLimits runs the gateway on the development channel file: the
// dealer's rate_limit (200 events/s, burst 1,000) admits a full burst, answers a
// request the bucket cannot have refilled for 429 with Retry-After, refuses a batch over the burst with 413, and
// leaves the unlimited crm-import channel alone.
func TestDeployedRateLimits(t *testing.T) {
	chs, err := gateway.LoadChannels("../../../deploy/channels.json")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{cfg: func(c *gateway.Config) { c.Channels = chs }})
	const dealerSrc, crmSrc = "urn:touchstream:channel:dealer", "urn:touchstream:channel:crm-import"
	burst := func(src, prefix string, n int) []byte {
		evs := make([]map[string]any, n)
		for i := range evs {
			evs[i] = rechargeEvent(src, prefix+strconv.Itoa(i), "C-RL", 100)
		}
		return batch(t, evs...)
	}
	if got := e.post(t, "dev-dealer-key", ctBatch, burst(dealerSrc, "d-", 1000), nil); got.code != http.StatusOK || got.body.Stored != 1000 {
		t.Fatalf("a full burst: status %d, stored %d: %.300s", got.code, got.body.Stored, got.raw)
	}
	// 500 more need 2.5s of refill at 200/s: far more than has passed.
	got := e.post(t, "dev-dealer-key", ctBatch, burst(dealerSrc, "d-over-", 500), nil)
	if got.code != http.StatusTooManyRequests || got.header.Get("Retry-After") == "" || !strings.Contains(got.body.Error, "rate limit of 200 events/s") {
		t.Errorf("after the burst: status %d, Retry-After %q: %s; want 429 naming the limit", got.code, got.header.Get("Retry-After"), got.raw)
	}
	if got := e.post(t, "dev-dealer-key", ctBatch, burst(dealerSrc, "d-big-", 1001), nil); got.code != http.StatusRequestEntityTooLarge {
		t.Errorf("a batch over the burst: status %d, want 413: %.300s", got.code, got.raw)
	}
	if got := e.post(t, "dev-crm-import-key", ctBatch, burst(crmSrc, "c-", 1000), nil); got.code != http.StatusOK {
		t.Errorf("the unlimited channel: status %d: %.300s", got.code, got.raw)
	}
}
