package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultTicketTTL is how long a stream ticket may be used to open a stream.
const DefaultTicketTTL = time.Minute

// Tickets issues and verifies stream tickets: short-lived, HMAC-SHA256-signed
// statements of a principal, for the console's live streams (a browser's EventSource
// cannot send an Authorization header, so the ticket travels in the URL). A ticket
// opens a stream only (Gate.Stream), never an API route, and only until it expires;
// the stream it opened ends when the principal's own token expires. Tickets hold the
// staff id and roles, nothing secret and nothing personal.
type Tickets struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewTickets returns a ticket issuer with a signing key of at least 32 bytes and a
// lifetime (0: DefaultTicketTTL). Every instance of a service behind one address must
// share the key; a random key (RandomTicketKey) serves a single instance.
func NewTickets(key []byte, ttl time.Duration) (*Tickets, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("access: ticket key: %d bytes, at least 32 required", len(key))
	}
	if ttl == 0 {
		ttl = DefaultTicketTTL
	}
	if ttl < time.Second || ttl > time.Hour {
		return nil, fmt.Errorf("access: ticket lifetime %v: 1s to 1h", ttl)
	}
	return &Tickets{key: append([]byte(nil), key...), ttl: ttl, now: time.Now}, nil
}

// RandomTicketKey is a fresh 32-byte signing key.
func RandomTicketKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// ticketClaims is the signed content of a ticket.
type ticketClaims struct {
	Staff   string `json:"s"`
	Roles   []Role `json:"r"`
	Expires int64  `json:"e"`           // unix seconds: the ticket's end
	Token   int64  `json:"t,omitempty"` // unix seconds: the principal's token's end; 0 none
	Via     string `json:"v,omitempty"`
}

const ticketPrefix = "tkt1."

// Issue returns a ticket for the principal and when it expires.
func (t *Tickets) Issue(p Principal) (string, time.Time) {
	exp := t.now().Add(t.ttl).Truncate(time.Second)
	if !p.Expires.IsZero() && p.Expires.Before(exp) {
		exp = p.Expires
	}
	c := ticketClaims{Staff: p.StaffID, Roles: p.Roles, Expires: exp.Unix(), Via: p.Via}
	if !p.Expires.IsZero() {
		c.Token = p.Expires.Unix()
	}
	body, _ := json.Marshal(c) // strings and numbers
	payload := base64.RawURLEncoding.EncodeToString(body)
	return ticketPrefix + payload + "." + t.sign(payload), exp
}

func (t *Tickets) sign(payload string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(ticketPrefix + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var errBadTicket = fmt.Errorf("%w: malformed or forged stream ticket", ErrUnauthenticated)

// Verify returns the principal of a ticket this issuer signed and that has not
// expired. The principal's Expires is its token's, so a stream can end with it.
func (t *Tickets) Verify(ticket string) (Principal, error) {
	rest, ok := strings.CutPrefix(ticket, ticketPrefix)
	if !ok || len(ticket) > maxToken {
		return Principal{}, errBadTicket
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(t.sign(payload))) {
		return Principal{}, errBadTicket
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Principal{}, errBadTicket
	}
	var c ticketClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return Principal{}, errBadTicket
	}
	if !t.now().Before(time.Unix(c.Expires, 0)) {
		return Principal{}, fmt.Errorf("%w: the stream ticket expired; ask for a new one (POST /v1/stream/tickets)", ErrUnauthenticated)
	}
	if !ValidStaffID(c.Staff) {
		return Principal{}, errors.Join(errBadTicket, errors.New("staff id"))
	}
	names := make([]string, len(c.Roles))
	for i, r := range c.Roles {
		names[i] = string(r)
	}
	p := Principal{StaffID: c.Staff, Roles: knownRoles(names), Via: c.Via}
	if c.Token != 0 {
		p.Expires = time.Unix(c.Token, 0)
	}
	return p, nil
}
