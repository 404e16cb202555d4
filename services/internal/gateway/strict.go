package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of objects and arrays in one event: the deepest schema
// needs five levels, and a decoder walking a document a million levels deep is a
// denial of service.
const MaxDepth = 32

// maxExact is 2^53: every integer up to it is exact in a 64-bit float, the number
// type of JSON in most consumers (JavaScript, many JSON libraries).
const maxExact = 1 << 53

// jsonProblem is what strict JSON refuses in a document: where (a JSON pointer into
// it) and why. The reason never quotes the value.
type jsonProblem struct {
	pointer string
	reason  string
}

// strictJSON checks a syntactically valid JSON document against what the doors
// refuse although encoding/json would accept it, and returns the first problem in
// document order, or nil:
//   - a key that appears twice in one object (which value wins differs between
//     decoders);
//   - nesting deeper than MaxDepth;
//   - a number outside the range of a 64-bit float (1e400), or of magnitude beyond
//     2^53, which most consumers cannot hold exactly;
//   - invalid UTF-8 or a lone UTF-16 surrogate escape (\ud800) in a string or key,
//     which decoders silently replace by U+FFFD;
//   - a NUL character, raw or escaped (\u0000), which PostgreSQL text refuses and C
//     consumers truncate at.
//
// It is one pass over the bytes; a string is unescaped only when it is a key that
// holds an escape.
func strictJSON(b []byte) *jsonProblem {
	s := strictScanner{b: b}
	s.value()
	if s.problem == nil {
		return nil
	}
	return &jsonProblem{pointer: pointer(s.path), reason: s.problem.reason}
}

// pointer is the JSON pointer (RFC 6901) of a path.
func pointer(path []string) string {
	var p strings.Builder
	esc := strings.NewReplacer("~", "~0", "/", "~1")
	for _, t := range path {
		p.WriteByte('/')
		p.WriteString(esc.Replace(t))
	}
	return p.String()
}

type strictScanner struct {
	b       []byte
	i       int
	depth   int
	path    []string
	problem *jsonProblem
}

func (s *strictScanner) fail(format string, args ...any) {
	if s.problem == nil {
		s.problem = &jsonProblem{reason: fmt.Sprintf(format, args...)}
	}
}

func (s *strictScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *strictScanner) value() {
	s.ws()
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '{':
		if s.enter() {
			s.object()
			s.depth--
		}
	case '[':
		if s.enter() {
			s.array()
			s.depth--
		}
	case '"':
		s.str()
	case 't', 'f', 'n':
		for s.i < len(s.b) && s.b[s.i] >= 'a' && s.b[s.i] <= 'z' {
			s.i++
		}
	default:
		s.number()
	}
}

func (s *strictScanner) enter() bool {
	s.depth++
	if s.depth > MaxDepth {
		s.fail("nested deeper than %d levels of objects and arrays", MaxDepth)
		return false
	}
	return true
}

func (s *strictScanner) array() {
	s.i++ // '['
	for n := 0; s.problem == nil; n++ {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == ']' {
			s.i++
			return
		}
		s.path = append(s.path, strconv.Itoa(n))
		s.value()
		if s.problem != nil {
			return
		}
		s.next()
	}
}

// next leaves a member or element just read: its path, then the comma after it.
func (s *strictScanner) next() {
	s.path = s.path[:len(s.path)-1]
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ',' {
		s.i++
	}
}

func (s *strictScanner) object() {
	s.i++ // '{'
	var keys [][]byte
	var set map[string]struct{}
	for s.problem == nil {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return
		}
		k, ok := s.key()
		if !ok {
			return
		}
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
			s.fail("the key appears more than once in its object: send each key once")
			return
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ':' {
			s.i++
		}
		s.value()
		if s.problem != nil {
			return
		}
		s.next()
	}
}

// key reads a key and returns its unescaped content; a key that fails the string
// checks is reported at its own path.
func (s *strictScanner) key() ([]byte, bool) {
	start := s.i
	escaped := s.str()
	end := min(s.i, len(s.b))
	if s.problem != nil {
		// Stopped inside the key: name what was read of it.
		s.path = append(s.path, strings.ToValidUTF8(string(s.b[min(start+1, end):end]), "\uFFFD"))
		return nil, false
	}
	raw := s.b[min(start+1, end):max(end-1, start+1)]
	if !escaped {
		return raw, true
	}
	var v string
	if err := json.Unmarshal(s.b[start:end], &v); err != nil {
		return raw, true
	}
	return []byte(v), true
}

// str reads a string starting at '"', checking its bytes and escapes, and reports
// whether it holds an escape.
func (s *strictScanner) str() (escaped bool) {
	s.i++ // '"'
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped
		case c == 0:
			s.fail("a NUL character is not allowed in a string")
			return escaped
		case c == '\\':
			escaped = true
			if s.i+1 < len(s.b) && s.b[s.i+1] == 'u' {
				if !s.unicodeEscape() {
					return escaped
				}
				continue
			}
			s.i += 2
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				s.fail("not valid UTF-8 (byte 0x%02x): send text in UTF-8", c)
				return escaped
			}
			s.i += n
		}
	}
	return escaped
}

// unicodeEscape checks a \uXXXX escape at s.i (and the low half after a high
// surrogate) and moves past it.
func (s *strictScanner) unicodeEscape() bool {
	r, ok := s.hex4(s.i)
	if !ok {
		s.i += 2
		return true // not valid JSON: the syntax check reports it
	}
	s.i += 6
	switch {
	case r == 0:
		s.fail(`a NUL character (\u0000) is not allowed in a string`)
		return false
	case r >= 0xDC00 && r <= 0xDFFF:
		s.fail(`a lone UTF-16 surrogate escape (\u%04x) is not a character`, r)
		return false
	case r >= 0xD800 && r <= 0xDBFF:
		lo, ok := s.hex4(s.i)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			s.fail(`a lone UTF-16 surrogate escape (\u%04x) is not a character`, r)
			return false
		}
		s.i += 6
	}
	return true
}

// hex4 reads the code unit of a \uXXXX escape starting at i.
func (s *strictScanner) hex4(i int) (rune, bool) {
	if i+6 > len(s.b) || s.b[i] != '\\' || s.b[i+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.b[i+2:i+6]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

// number checks a number's range: within a 64-bit float, and no larger than 2^53 in
// magnitude.
func (s *strictScanner) number() {
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	lit := string(s.b[start:s.i])
	if lit == "" {
		s.i++ // not JSON: the syntax check reports it
		return
	}
	if !strings.ContainsAny(lit, ".eE") {
		digits := strings.TrimPrefix(lit, "-")
		if len(digits) < 16 {
			return
		}
		if n, err := strconv.ParseUint(digits, 10, 64); err == nil && n <= maxExact {
			return
		}
		s.fail("integer beyond ±2^53 (9007199254740992): it cannot be kept exactly")
		return
	}
	f, err := strconv.ParseFloat(lit, 64)
	switch {
	case err != nil:
		s.fail("number out of the range of a 64-bit float")
	case f > maxExact || f < -maxExact:
		s.fail("number beyond ±2^53 (9007199254740992): it cannot be kept exactly")
	}
}
