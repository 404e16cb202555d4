package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	if p := strictJSON(raw); p != nil {
		return refusedInput(p.pointer, p.reason)
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
		if err := validJSON(body); err != nil {
			return nil, err
		}
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
	if err := validJSON(body); err != nil {
		return nil, err
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
	if err := validJSON(body); err != nil {
		return nil, err
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
	if p := strictJSON(body); p != nil {
		in.add("/data"+p.pointer, p.reason)
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

// validJSON refuses a body that is not one JSON value, saying where it breaks; a
// valid value followed by anything but white space is named as trailing data.
func validJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return badRequestf("body is not valid JSON: %s", jsonErrorReason(err))
	}
	return badRequestf("body is not valid JSON: trailing data after the JSON value at byte %d", dec.InputOffset())
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
	if errors.Is(err, io.ErrUnexpectedEOF) || err != nil && strings.Contains(err.Error(), "unexpected end of JSON input") {
		return "unexpected end of input"
	}
	return "malformed JSON"
}
