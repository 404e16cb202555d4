package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// input is one event as a producer sent it: decoded, or the reasons its envelope could
// not be decoded.
type input struct {
	ev   *events.Event
	errs events.FieldErrors
}

// badRequest is a body that cannot be read as events at all: the whole request is
// answered 400 with its reason.
type badRequest struct{ reason string }

func (e *badRequest) Error() string { return e.reason }

func badRequestf(format string, args ...any) error {
	return &badRequest{reason: fmt.Sprintf(format, args...)}
}

// extensionName is the CloudEvents rule for attribute names. Extension attributes are
// accepted and not stored: touchstream keeps only the attributes it defines.
var extensionName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// decodeStructured decodes one structured-mode event (a JSON object).
func decodeStructured(raw []byte) input {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return refusedInput("", "must be a JSON object: a CloudEvents structured-mode event")
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(raw, &attrs); err != nil {
		return refusedInput("", "not valid JSON: "+jsonErrorReason(err))
	}
	if ptr, ok := duplicateKey(raw); ok {
		return refusedInput(ptr, "the key appears more than once in its object: send each key once")
	}
	var in input
	e := &events.Event{}
	spec := false
	for name, v := range attrs {
		field := "/" + name
		switch name {
		case "specversion":
			s, ok := in.str(field, v)
			if ok && s != events.SpecVersion {
				in.add(field, fmt.Sprintf("must be %q", events.SpecVersion))
			}
			spec = true
		case "id":
			e.ID, _ = in.str(field, v)
		case "source":
			e.Source, _ = in.str(field, v)
		case "type":
			e.Type, _ = in.str(field, v)
		case "subject":
			e.Subject, _ = in.str(field, v)
		case "dataschema":
			e.DataSchema, _ = in.str(field, v)
		case "datacontenttype":
			if s, ok := in.str(field, v); ok {
				in.contentType(field, s)
			}
		case "time":
			if s, ok := in.str(field, v); ok {
				e.Time = in.time(field, s)
			}
		case "partition":
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 0 {
				in.add(field, "must be a non-negative integer")
			}
			e.Partition = n
		case "data":
			e.Data = v
		case "data_base64":
			in.add(field, "not supported: data must be JSON (datacontenttype application/json)")
		default:
			if !extensionName.MatchString(name) {
				in.add(field, "not a CloudEvents attribute: names are 1-20 characters of [a-z0-9]")
			}
		}
	}
	if !spec {
		in.add("/specversion", "required: "+strconv.Quote(events.SpecVersion))
	}
	if _, ok := attrs["partition"]; ok && e.Subject != "" {
		in.add("/partition", "only partition-wide events (without subject) name a partition")
	}
	if len(in.errs) > 0 {
		slices.SortStableFunc(in.errs, func(a, b events.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return in
	}
	in.ev = e
	return in
}

// decodeBatch decodes a JSON array of structured-mode events.
func decodeBatch(body []byte, maxBatch int) ([]input, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badRequestf("empty body: a batch is a JSON array of structured-mode events")
	}
	if body[0] != '[' {
		return nil, badRequestf("a batch must be a JSON array of structured-mode events")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, badRequestf("body is not a JSON array: %s", jsonErrorReason(err))
	}
	if len(raws) == 0 {
		return nil, badRequestf("empty batch: send at least one event")
	}
	if len(raws) > maxBatch {
		return nil, &tooLarge{reason: fmt.Sprintf("batch of %d events: the limit is %d per request", len(raws), maxBatch)}
	}
	out := make([]input, len(raws))
	for i, r := range raws {
		out[i] = decodeStructured(r)
	}
	return out, nil
}

// decodeSingle decodes a body holding one structured-mode event.
func decodeSingle(body []byte) ([]input, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badRequestf("empty body: send one structured-mode event (a JSON object)")
	}
	if body[0] != '{' {
		return nil, badRequestf("structured mode carries one event as a JSON object")
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, badRequestf("body is not valid JSON: %s", jsonErrorReason(err))
	}
	return []input{decodeStructured(body)}, nil
}

// decodeBinary decodes a binary-mode event: attributes in ce-* headers, the data as
// the body. Header values are percent-decoded, as the HTTP binding requires.
func decodeBinary(h http.Header, body []byte) ([]input, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badRequestf("empty body: binary mode carries the event's data (a JSON object) as the body")
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, badRequestf("body is not valid JSON: %s", jsonErrorReason(err))
	}
	var in input
	e := &events.Event{Data: body}
	get := func(name, field string) (string, bool) {
		vs := h.Values(name)
		if len(vs) == 0 {
			return "", false
		}
		if len(vs) > 1 {
			in.add(field, "header "+name+" sent more than once")
			return "", false
		}
		s, err := url.PathUnescape(vs[0])
		if err != nil {
			in.add(field, "header "+name+" is not correctly percent-encoded")
			return "", false
		}
		return s, true
	}
	if s, ok := get("Ce-Specversion", "/specversion"); ok && s != events.SpecVersion {
		in.add("/specversion", fmt.Sprintf("must be %q", events.SpecVersion))
	}
	e.ID, _ = get("Ce-Id", "/id")
	e.Source, _ = get("Ce-Source", "/source")
	e.Type, _ = get("Ce-Type", "/type")
	e.Subject, _ = get("Ce-Subject", "/subject")
	e.DataSchema, _ = get("Ce-Dataschema", "/dataschema")
	if s, ok := get("Ce-Time", "/time"); ok {
		e.Time = in.time("/time", s)
	}
	if s, ok := get("Ce-Partition", "/partition"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			in.add("/partition", "must be a non-negative integer")
		}
		if e.Subject != "" {
			in.add("/partition", "only partition-wide events (without subject) name a partition")
		}
		e.Partition = n
	}
	if body[0] == '{' {
		if ptr, ok := duplicateKey(body); ok {
			in.add("/data"+ptr, "the key appears more than once in its object: send each key once")
		}
	}
	if len(in.errs) > 0 {
		return []input{in}, nil
	}
	in.ev = e
	return []input{in}, nil
}

// decodeAny decodes a NATS request body: one structured-mode event or a batch array.
func decodeAny(body []byte, maxBatch int) ([]input, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		return decodeBatch(body, maxBatch)
	}
	return decodeSingle(body)
}

func refusedInput(field, reason string) input {
	return input{errs: events.FieldErrors{{Field: field, Reason: reason}}}
}

func (in *input) add(field, reason string) {
	in.errs = append(in.errs, events.FieldError{Field: field, Reason: reason})
}

// str reads a JSON string attribute.
func (in *input) str(field string, v json.RawMessage) (string, bool) {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		in.add(field, "must be a string")
		return "", false
	}
	return s, true
}

func (in *input) contentType(field, s string) {
	if s == events.ContentType {
		return
	}
	mt, params, err := parseMediaType(s)
	if err != nil || mt != events.ContentType || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		in.add(field, fmt.Sprintf("must be %q", events.ContentType))
	}
}

func (in *input) time(field, s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		in.add(field, "must be an RFC 3339 timestamp with an offset, e.g. 2025-03-01T09:30:00+08:00")
		return time.Time{}
	}
	return t
}

// jsonErrorReason describes a JSON syntax error without quoting the input.
func jsonErrorReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("unexpected JSON %s at byte %d", te.Value, te.Offset)
	}
	if err != nil && strings.Contains(err.Error(), "unexpected end of JSON input") {
		return "unexpected end of input"
	}
	return "malformed JSON"
}

// duplicateKey reports the JSON pointer of the first key that appears twice in one
// object of a valid JSON document. It is one pass over the bytes without decoding
// values; a key is unescaped only when it holds an escape.
func duplicateKey(b []byte) (string, bool) {
	s := dupScanner{b: b}
	s.value()
	if !s.found {
		return "", false
	}
	var p strings.Builder
	for _, t := range s.path {
		p.WriteByte('/')
		p.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return p.String(), true
}

type dupScanner struct {
	b     []byte
	i     int
	path  []string
	found bool
}

func (s *dupScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *dupScanner) value() {
	s.ws()
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '{':
		s.object()
	case '[':
		s.i++
		for n := 0; !s.found; n++ {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return
			}
			s.path = append(s.path, strconv.Itoa(n))
			s.value()
			if s.found {
				return
			}
			s.path = s.path[:len(s.path)-1]
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ',' {
				s.i++
			}
		}
	case '"':
		s.str()
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			s.i++
		}
	}
}

func (s *dupScanner) object() {
	s.i++ // '{'
	var keys [][]byte
	var set map[string]struct{}
	for !s.found {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return
		}
		k := s.str()
		dup := false
		if set != nil {
			_, dup = set[string(k)]
			set[string(k)] = struct{}{}
		} else {
			for _, o := range keys {
				if bytes.Equal(o, k) {
					dup = true
					break
				}
			}
			keys = append(keys, k)
			if len(keys) > 16 {
				set = make(map[string]struct{}, 32)
				for _, o := range keys {
					set[string(o)] = struct{}{}
				}
			}
		}
		s.path = append(s.path, string(k))
		if dup {
			s.found = true
			return
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ':' {
			s.i++
		}
		s.value()
		if s.found {
			return
		}
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
		}
	}
}

// str reads a string starting at '"' and returns its unescaped content.
func (s *dupScanner) str() []byte {
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '\\' {
			escaped = true
			s.i += 2
			continue
		}
		s.i++
		if c == '"' {
			break
		}
	}
	end := min(s.i, len(s.b))
	if !escaped {
		return s.b[min(start+1, end):max(end-1, start+1)]
	}
	var v string
	if err := json.Unmarshal(s.b[start:end], &v); err != nil {
		return s.b[start:end]
	}
	return []byte(v)
}
