package access

import "time"

// SetClock sets the clock of a verifier, for tests of time-dependent behaviour
// without waiting.
func SetClock(o *OIDC, now func() time.Time) { o.now = now }
