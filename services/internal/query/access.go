package query

import (
	"errors"
	"net/http"
)

// Access is how much of a customer's personal data a viewer may see.
type Access string

const (
	// AccessMasked shows personal fields masked (138****8000). The default.
	AccessMasked Access = "masked"
	// AccessFull shows personal fields in clear.
	AccessFull Access = "full"
)

// Viewer is who a request comes from and what it may see.
type Viewer struct {
	// ID names the viewer in logs (and, later, the access audit); "" is anonymous.
	// It must not be personal data.
	ID string
	// Access is the viewer's access to personal fields. Any value other than
	// AccessFull is treated as AccessMasked.
	Access Access
}

// level is the access actually granted: anything not explicitly full is masked.
func (v Viewer) level() Access {
	if v.Access == AccessFull {
		return AccessFull
	}
	return AccessMasked
}

// ViewerFunc decides the viewer of a request, typically from its bearer token. An
// error matching ErrUnauthenticated answers 401; any other error is a logged 500.
type ViewerFunc func(r *http.Request) (Viewer, error)

// ErrUnauthenticated: the request does not say who it comes from, or says it wrongly.
var ErrUnauthenticated = errors.New("unauthenticated")

// MaskedForEveryone is the default ViewerFunc until roles arrive: every request is an
// anonymous viewer with masked access.
func MaskedForEveryone(*http.Request) (Viewer, error) { return Viewer{Access: AccessMasked}, nil }
