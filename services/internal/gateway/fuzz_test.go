package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

// FuzzIngestHTTP sends arbitrary bodies and content types (and, for binary mode, ce-*
// header values) through the real handler, storing into a real JetStream: it never
// panics, never answers 5xx, and always answers JSON.
func FuzzIngestHTTP(f *testing.F) {
	e := newEnv(f, envOpts{noServer: true, deps: func(d *gateway.Deps) {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}})
	h := e.gw.Handler()
	one := mustJSON(f, rechargeEvent(storeSrc, "fz-1", "C-1", 100))
	reg := mustJSON(f, registeredEvent(storeSrc, "fz-2", "C-2"))
	f.Add(ctStructured, one, "")
	f.Add(ctStructured, reg, "")
	f.Add(ctBatch, []byte("["+string(one)+","+string(reg)+"]"), "")
	f.Add(ctBinary, []byte(`{"recharge_id":"R-1","amount":{"fen":1,"currency":"CNY"},"method":"cash"}`),
		"fz-3\n"+storeSrc+"\nrecharge.completed\nC-3\n2026-01-01T00:00:00+08:00\nhttps://touchstream.dev/schemas/recharge.completed/v1")
	f.Add(ctBinary, []byte(`{}`), "%zz\n\n\n\n\n")
	f.Add(ctBatch, []byte(`[{"specversion":"1.0","id":"a","id":"b"}, 1, "x", null, []]`), "")
	f.Add(ctStructured, []byte(`{"specversion":"1.0","partition":-1,"data":{"a":{"b":[{"c":1,"c":2}]}}}`), "")
	f.Add(ctStructured, []byte(`{"data_base64":"AA==","datacontenttype":"text/plain","TIME":"x"}`), "")
	f.Add("application/cloudevents+json; charset=\"", []byte(`{`), "")
	f.Add(ctBatch, []byte(`[`), "")
	f.Add("text/html", []byte(`<html>`), "")
	f.Fuzz(func(t *testing.T, contentType string, body []byte, attrs string) {
		req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+storeKey)
		for i, v := range strings.Split(attrs, "\n") {
			names := []string{"ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "ce-dataschema", "ce-partition", "ce-specversion"}
			if i < len(names) && v != "" {
				req.Header.Set(names[i], v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for malformed input: %s", rec.Code, rec.Body.Bytes())
		}
		var resp gateway.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d: response is not JSON: %v: %s", rec.Code, err, rec.Body.Bytes())
		}
		if resp.RequestID == "" {
			t.Fatalf("no request id: %s", rec.Body.Bytes())
		}
		if n := resp.Stored + resp.Duplicates + resp.Refused + resp.Unknown + resp.Failed; n != len(resp.Results) {
			t.Fatalf("counts add up to %d for %d results", n, len(resp.Results))
		}
		for i, r := range resp.Results {
			if r.Index != i {
				t.Fatalf("result %d has index %d", i, r.Index)
			}
		}
	})
}
