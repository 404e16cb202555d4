package access

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Authenticator turns a bearer token into a principal. An error matches
// ErrUnauthenticated when the token is not valid; errNotMine (unexported) says the
// token is not of this source's kind, so that a Chain asks the next one.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// errNotMine: the token is not one this source issues (not in the file; not a JWT).
var errNotMine = fmt.Errorf("%w: unknown token", ErrUnauthenticated)

// Chain asks each source in turn: the first that knows the token decides.
func Chain(sources ...Authenticator) Authenticator { return chain(sources) }

type chain []Authenticator

func (c chain) Authenticate(ctx context.Context, token string) (Principal, error) {
	for _, s := range c {
		p, err := s.Authenticate(ctx, token)
		if errors.Is(err, errNotMine) {
			continue
		}
		return p, err
	}
	return Principal{}, errNotMine
}

// maxToken bounds a bearer token (a JWT with many roles stays far below).
const maxToken = 8 << 10

// errNoToken: the request carries no bearer token.
var errNoToken = fmt.Errorf("%w: no bearer token (send Authorization: Bearer <token>)", ErrUnauthenticated)

// BearerToken returns the token of an Authorization: Bearer header.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	switch {
	case len(h) == 0:
		return "", errNoToken
	case len(h) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization scheme must be Bearer", ErrUnauthenticated)
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return "", errNoToken
	case len(tok) > maxToken:
		return "", fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, maxToken)
	}
	return tok, nil
}

// Gate authenticates HTTP requests and authorizes them by the role matrix.
type Gate struct {
	// Tokens decides who a bearer token is (StaticTokens, OIDC, or a Chain of both).
	Tokens Authenticator
	// Tickets verifies the stream tickets of Stream; nil: streams take bearer
	// tokens only.
	Tickets *Tickets
}

// Principal authenticates the request by its bearer token.
func (g *Gate) Principal(r *http.Request) (Principal, error) {
	tok, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	return g.Tokens.Authenticate(r.Context(), tok)
}

// Authorize authenticates the request and checks the route in the role matrix: an
// error matches ErrUnauthenticated (401) or ErrForbidden (403).
func (g *Gate) Authorize(r *http.Request, route string) (Principal, error) {
	p, err := g.Principal(r)
	if err != nil {
		return Principal{}, err
	}
	return p, p.Authorize(route)
}

// Stream authorizes a live stream, whose client (a browser's EventSource) cannot set
// headers: the ticket query parameter (Tickets.Issue) or, failing that, a bearer
// token.
func (g *Gate) Stream(r *http.Request, route string) (Principal, error) {
	t := r.URL.Query()["ticket"]
	if len(t) == 0 || g.Tickets == nil {
		return g.Authorize(r, route)
	}
	if len(t) > 1 {
		return Principal{}, fmt.Errorf("%w: more than one ticket", ErrUnauthenticated)
	}
	p, err := g.Tickets.Verify(t[0])
	if err != nil {
		return Principal{}, err
	}
	return p, p.Authorize(route)
}

// Challenge is the WWW-Authenticate header (RFC 6750) answering an error of
// Authorize: a bare challenge when no token was sent, invalid_token with the reason
// for a bad one, insufficient_scope naming the roles for a refusal.
func Challenge(err error) string {
	const c = `Bearer realm="touchstream"`
	var fe *ForbiddenError
	switch {
	case errors.As(err, &fe):
		return c + `, error="insufficient_scope", scope="` + joinRoles(fe.Needs, " ") + `"`
	case errors.Is(err, errNoToken):
		return c
	case err != nil:
		desc := strings.Map(func(r rune) rune {
			if r == '"' || r == '\\' || r < ' ' || r > '~' {
				return '\''
			}
			return r
		}, strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": "))
		return c + `, error="invalid_token", error_description="` + desc + `"`
	}
	return c
}

// Reason is the client-facing message of an authentication or authorization error.
func Reason(err error) string {
	var fe *ForbiddenError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	msg := strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": ")
	return "not authenticated: " + msg
}
