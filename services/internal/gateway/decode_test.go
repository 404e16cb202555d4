package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStrictJSON(t *testing.T) {
	tests := []struct {
		name       string
		json       string
		wantPtr    string
		wantReason string // "" none
	}{
		{name: "none", json: `{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}],"d":"张伟 \u00e9 \ud83d\ude00","e":-12.5e3,"f":9007199254740992}`},
		{name: "top level duplicate", json: `{"id":"1","type":"x","id":"2"}`, wantPtr: "/id", wantReason: "more than once"},
		{name: "nested duplicate", json: `{"data":{"amount":{"fen":1,"currency":"CNY","fen":2}}}`, wantPtr: "/data/amount/fen", wantReason: "more than once"},
		{name: "duplicate in an array", json: `{"a":[{"x":1},{"y":1,"y":2}]}`, wantPtr: "/a/1/y", wantReason: "more than once"},
		{name: "escaped spelling", json: `{"id":"1","\u0069d":"2"}`, wantPtr: "/id", wantReason: "more than once"},
		{name: "pointer escaping", json: `{"a/b":{"~":1,"~":2}}`, wantPtr: "/a~1b/~0", wantReason: "more than once"},
		{name: "strings with braces and quotes", json: `{"a":"{\"a\":1,\"a\":2}","b":"]}"}`},
		{name: "many keys", json: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":0,"k12":0,"k13":0,"k14":0,"k15":0,"k16":0,"k17":0,"k3":9}`, wantPtr: "/k3", wantReason: "more than once"},
		{name: "scalars", json: `[1, true, null, "x", -2.5e3]`},
		{name: "deep", json: `{"data":` + strings.Repeat(`[`, MaxDepth) + strings.Repeat(`]`, MaxDepth) + `}`, wantPtr: "/data" + strings.Repeat("/0", MaxDepth-1), wantReason: "nested deeper than 32"},
		{name: "deep enough", json: strings.Repeat(`[`, MaxDepth) + strings.Repeat(`]`, MaxDepth)},
		{name: "1e400", json: `{"data":{"amount":{"fen":1e400}}}`, wantPtr: "/data/amount/fen", wantReason: "out of the range of a 64-bit float"},
		{name: "integer beyond 2^53", json: `{"data":{"fen":9007199254740993}}`, wantPtr: "/data/fen", wantReason: "beyond ±2^53"},
		{name: "negative integer beyond 2^53", json: `{"n":-123456789012345678901234567890}`, wantPtr: "/n", wantReason: "beyond ±2^53"},
		{name: "float beyond 2^53", json: `{"n":1e20}`, wantPtr: "/n", wantReason: "beyond ±2^53"},
		{name: "invalid UTF-8", json: "{\"data\":{\"name\":\"\xff\xfe\"}}", wantPtr: "/data/name", wantReason: "not valid UTF-8"},
		{name: "invalid UTF-8 in a key", json: "{\"data\":{\"n\xc3\":1}}", wantPtr: "/data/n", wantReason: "not valid UTF-8"},
		{name: "lone high surrogate", json: `{"name":"\ud800x"}`, wantPtr: "/name", wantReason: "lone UTF-16 surrogate"},
		{name: "lone low surrogate", json: `{"name":"\udc00"}`, wantPtr: "/name", wantReason: "lone UTF-16 surrogate"},
		{name: "escaped NUL", json: `{"data":{"id_number":"1101\u0000"}}`, wantPtr: "/data/id_number", wantReason: "NUL character"},
		{name: "raw NUL", json: "{\"a\":\"x\x00\"}", wantPtr: "/a", wantReason: "NUL character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := strictJSON([]byte(tt.json))
			if tt.wantReason == "" {
				if p != nil {
					t.Fatalf("strictJSON = %q %q, want nothing", p.pointer, p.reason)
				}
				return
			}
			if p == nil || p.pointer != tt.wantPtr || !strings.Contains(p.reason, tt.wantReason) {
				t.Fatalf("strictJSON = %+v, want %q with %q", p, tt.wantPtr, tt.wantReason)
			}
		})
	}
}

// FuzzStrictJSON runs the strict checks over arbitrary bytes: they never panic, and a
// valid document they pass holds only valid UTF-8 and no NUL byte, and decodes with
// encoding/json to the same number of keys it spells (no key given twice).
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"a":2}`, `{"d":"\ud800"}`, `{"n":1e400}`, `[9007199254740993]`,
		"{\"x\":\"\xff\"}", `{"a":"\u0000"}`, strings.Repeat("[", 40) + strings.Repeat("]", 40), `{"a":{"b":[{"c":"\"}"}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := strictJSON(b)
		if p != nil && p.pointer != "" && p.pointer[0] != '/' {
			t.Fatalf("pointer %q is not a JSON pointer", p.pointer)
		}
		if p != nil || !json.Valid(b) {
			return
		}
		if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
			t.Fatalf("passed a document with invalid UTF-8 or a NUL byte: %q", b)
		}
		if spelled, decoded := countKeys(b); spelled != decoded {
			t.Fatalf("passed a document spelling %d keys that decodes to %d: %q", spelled, decoded, b)
		}
	})
}

// countKeys counts the keys a document spells (read token by token) and the keys it
// decodes to (a map keeps one of repeated keys).
func countKeys(b []byte) (spelled, decoded int) {
	var spell func(dec *json.Decoder) int
	spell = func(dec *json.Decoder) int {
		tok, err := dec.Token()
		if err != nil {
			return 0
		}
		n := 0
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				if _, err := dec.Token(); err != nil { // the key
					return n
				}
				n += 1 + spell(dec)
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				n += spell(dec)
			}
			_, _ = dec.Token()
		}
		return n
	}
	spelled = spell(json.NewDecoder(bytes.NewReader(b)))
	var v any
	_ = json.Unmarshal(b, &v)
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			decoded += len(x)
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return spelled, decoded
}
