package query

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Bounds of the list parameters.
const (
	defaultLimit = 50
	maxLimit     = 500
	maxCursor    = 512 // bytes
	maxListItems = 32  // values of a comma-separated list parameter
)

// token is the shape of region, segment and tier values: the contract's opaque "ref".
var token = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// params is a request's query string, read strictly: an unknown or repeated
// parameter is an error naming it. An empty value counts as absent, as forms send it.
type params map[string]string

func parseParams(c *call, allowed ...string) (params, error) {
	values, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, badParam("", "the query string is not valid URL encoding")
	}
	p := params{}
	for name, vs := range values {
		if !slices.Contains(allowed, name) {
			if len(allowed) == 0 {
				return nil, badParam(name, "this resource takes no query parameters")
			}
			return nil, badParam(name, "unknown parameter; this resource takes "+strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, badParam(name, "given more than once; lists are comma separated")
		}
		if vs[0] != "" {
			p[name] = vs[0]
		}
	}
	return p, nil
}

// limit reads "limit": 1-500, default 50.
func (p params) limit() (int, error) {
	v, ok := p["limit"]
	if !ok {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badParam("limit", fmt.Sprintf("must be an integer from 1 to %d", maxLimit))
	}
	return n, nil
}

// cursor reads "cursor"; its content is checked by the read model.
func (p params) cursor() (string, error) {
	v := p["cursor"]
	if len(v) > maxCursor {
		return "", badParam("cursor", "malformed cursor: pass the \"next\" value of the previous page unchanged")
	}
	return v, nil
}

// list reads a comma-separated list, each value checked by valid.
func (p params) list(name string, valid func(string) error) ([]string, error) {
	v, ok := p[name]
	if !ok {
		return nil, nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, badParam(name, "empty item in the comma-separated list")
		}
		if err := valid(item); err != nil {
			return nil, badParam(name, err.Error())
		}
		if !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	if len(out) > maxListItems {
		return nil, badParam(name, fmt.Sprintf("at most %d values", maxListItems))
	}
	return out, nil
}

// time reads an RFC 3339 instant. A "+" of an offset that reached us as a space (an
// unencoded "+" in a query string means a space) is taken back as "+".
func (p params) time(name string) (time.Time, error) {
	v, ok := p[name]
	if !ok {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil && strings.Contains(v, " ") {
		t, err = time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
	}
	if err != nil {
		return time.Time{}, badParam(name, "must be an RFC 3339 time such as 2026-03-01T00:00:00+08:00 (encode + as %2B)")
	}
	return t, nil
}

// pathCustomer reads and checks the {id} path segment.
func pathCustomer(c *call) (string, error) {
	id := c.r.PathValue("id")
	if !events.ValidCustomerID(id) {
		return "", badParam("id", "a customer id is 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
	}
	c.customer = id
	return id, nil
}

// validSource checks one source (channel) of a timeline filter: a CloudEvents source
// is a URI reference; here it only needs to be printable and bounded.
func validSource(s string) error {
	if len(s) > 256 {
		return fmt.Errorf("a source is at most 256 characters")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("a source has no spaces or control characters")
		}
	}
	return nil
}

// validPhone checks a phone number to search for without echoing it: digits with
// optional +, spaces, dashes, dots and parentheses; 5 to 20 digits once normalised.
func validPhone(raw, normalized string) error {
	for _, r := range raw {
		if !(r >= '0' && r <= '9') && !strings.ContainsRune("+ -().", r) {
			return fmt.Errorf("a phone number is digits, optionally with +, spaces, dashes, dots or parentheses")
		}
	}
	if n := len(normalized); n < 5 || n > 20 {
		return fmt.Errorf("a phone number has 5 to 20 digits (without the +86 country code)")
	}
	return nil
}
