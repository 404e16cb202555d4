package access

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of OIDCConfig.
const (
	DefaultRolesClaim    = "roles"
	DefaultStaffClaim    = "sub"
	DefaultLeeway        = time.Minute
	DefaultJWKSRefresh   = 10 * time.Minute
	minJWKSRefreshPeriod = 30 * time.Second
)

// OIDCConfig configures the verification of an identity provider's JWT access
// tokens.
type OIDCConfig struct {
	// Issuer is the provider's issuer (the iss claim), exactly. Required.
	Issuer string
	// Audience is this API's audience: the aud claim must be or contain it. Required.
	Audience string
	// JWKSFile is a file holding the provider's JSON Web Key Set; JWKSURL its jwks_uri.
	// At least one is required; with both, the file's keys are read first and the
	// URL's are added.
	JWKSFile string
	JWKSURL  string
	// RolesClaim is the claim holding the roles, as a dotted path ("roles",
	// "realm_access.roles", "resource_access.touchstream.roles"): an array of strings or
	// one space-separated string. Names that are not touchstream roles are ignored.
	// Default "roles".
	RolesClaim string
	// StaffClaim is the claim holding the staff id (default "sub"): it must be an
	// account id (1-64 of A-Z a-z 0-9 _ . : -), never an e-mail address or a name.
	StaffClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat (default 1 minute, at most
	// 5 minutes).
	Leeway time.Duration
	// JWKSRefresh is how often the URL's key set is read again (default 10 minutes); a
	// token with an unknown kid also reads it again, at most every 30 seconds.
	JWKSRefresh time.Duration
	// HTTPClient fetches JWKSURL (default: a client with a 5 s timeout).
	HTTPClient *http.Client
	// Log receives key-set refresh failures; nil discards.
	Log *slog.Logger
}

// Validate checks the configuration after defaults are applied.
func (c OIDCConfig) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		add("oidc: Issuer: required (the iss claim of the provider's tokens)")
	}
	if c.Audience == "" {
		add("oidc: Audience: required (the aud claim tokens for this API carry)")
	}
	if c.JWKSFile == "" && c.JWKSURL == "" {
		add("oidc: JWKSFile or JWKSURL: one is required (the provider's signing keys)")
	}
	if c.JWKSURL != "" && !strings.HasPrefix(c.JWKSURL, "https://") && !strings.HasPrefix(c.JWKSURL, "http://") {
		add("oidc: JWKSURL %q: must be an http(s) URL", c.JWKSURL)
	}
	for _, claim := range []struct{ name, v string }{{"RolesClaim", c.RolesClaim}, {"StaffClaim", c.StaffClaim}} {
		for _, part := range strings.Split(claim.v, ".") {
			if part == "" {
				add("oidc: %s %q: a dotted claim path without empty parts", claim.name, claim.v)
				break
			}
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		add("oidc: Leeway %v: 0 to 5m", c.Leeway)
	}
	if c.JWKSRefresh < minJWKSRefreshPeriod {
		add("oidc: JWKSRefresh %v: at least %v", c.JWKSRefresh, minJWKSRefreshPeriod)
	}
	return errors.Join(errs...)
}

func (c *OIDCConfig) setDefaults() {
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	if c.StaffClaim == "" {
		c.StaffClaim = DefaultStaffClaim
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// OIDC verifies JWT access tokens (RFC 9068) signed by an identity provider with
// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512, against the
// provider's key set. "none" and the HMAC algorithms are refused: a public key set
// cannot verify them, and accepting them would let anyone mint tokens.
type OIDC struct {
	cfg     OIDCConfig
	now     func() time.Time
	mu      sync.Mutex
	keys    map[string]verifyKey
	fileKey map[string]verifyKey
	fetched time.Time // last read of the URL (success or not)
}

var _ Authenticator = (*OIDC)(nil)

// NewOIDC reads the key set (file and URL) and returns the verifier.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := &OIDC{cfg: cfg, now: time.Now, keys: map[string]verifyKey{}}
	if cfg.JWKSFile != "" {
		keys, err := readJWKS(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: JWKS file %s: %w", cfg.JWKSFile, err)
		}
		o.fileKey = keys
	}
	if cfg.JWKSURL != "" {
		if err := o.refresh(ctx); err != nil {
			return nil, err
		}
	} else {
		o.keys = o.fileKey
	}
	return o, nil
}

// refresh reads the URL's key set; the file's keys are kept beside it.
func (o *OIDC) refresh(ctx context.Context) error {
	o.fetched = o.now()
	keys, err := fetchJWKS(ctx, o.cfg.HTTPClient, o.cfg.JWKSURL)
	if err != nil {
		return fmt.Errorf("oidc: JWKS %s: %w", o.cfg.JWKSURL, err)
	}
	for k, v := range o.fileKey {
		keys[k] = v
	}
	o.keys = keys
	return nil
}

// key finds a kid, reading the URL's set again when it is old, or when the kid is
// unknown and the set was not read in the last 30 seconds (a provider rotating its
// keys).
func (o *OIDC) key(ctx context.Context, kid string) (verifyKey, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k, ok := o.keys[kid]
	if o.cfg.JWKSURL == "" {
		return k, ok
	}
	age := o.now().Sub(o.fetched)
	if age >= o.cfg.JWKSRefresh || (!ok && age >= minJWKSRefreshPeriod) {
		if err := o.refresh(ctx); err != nil {
			o.cfg.Log.Warn("reading the identity provider's keys failed; keeping the previous ones", "error", err)
		}
		k, ok = o.keys[kid]
	}
	return k, ok
}

// jwtHeader is the protected header of a JWS.
type jwtHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// algorithm is a supported signature algorithm.
type algorithm struct {
	hash  crypto.Hash
	rsa   bool
	pss   bool
	curve int // EC key size in bits
}

var algorithms = map[string]algorithm{
	"RS256": {hash: crypto.SHA256, rsa: true},
	"RS384": {hash: crypto.SHA384, rsa: true},
	"RS512": {hash: crypto.SHA512, rsa: true},
	"PS256": {hash: crypto.SHA256, rsa: true, pss: true},
	"PS384": {hash: crypto.SHA384, rsa: true, pss: true},
	"PS512": {hash: crypto.SHA512, rsa: true, pss: true},
	"ES256": {hash: crypto.SHA256, curve: 256},
	"ES384": {hash: crypto.SHA384, curve: 384},
	"ES512": {hash: crypto.SHA512, curve: 521},
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// Authenticate verifies a JWT and returns its principal. A token that is not shaped
// like a JWT (three base64url parts) is errNotMine.
func (o *OIDC) Authenticate(ctx context.Context, token string) (Principal, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Principal{}, errNotMine
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Principal{}, errNotMine
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return Principal{}, invalid("the JWT header is not JSON")
	}
	alg, ok := algorithms[h.Alg]
	switch {
	case h.Alg == "none" || h.Alg == "":
		return Principal{}, invalid("unsigned JWT (alg none) refused")
	case !ok:
		return Principal{}, invalid("JWT algorithm %q not accepted (RS256, ES256 and their kin only)", h.Alg)
	case len(h.Crit) > 0:
		return Principal{}, invalid("JWT with critical header extensions refused")
	case h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") && !strings.EqualFold(h.Typ, "at+jwt") && !strings.EqualFold(h.Typ, "application/at+jwt"):
		return Principal{}, invalid("JWT type %q is not an access token", h.Typ)
	case h.Kid == "":
		return Principal{}, invalid("JWT without a key id (kid)")
	}
	key, ok := o.key(ctx, h.Kid)
	if !ok {
		return Principal{}, invalid("JWT signed with an unknown key (kid %s)", h.Kid)
	}
	if key.alg != "" && key.alg != h.Alg {
		return Principal{}, invalid("key %s is for %s, the JWT says %s", h.Kid, key.alg, h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Principal{}, invalid("the JWT signature is not base64url")
	}
	if err := verifySignature(alg, key.pub, []byte(parts[0]+"."+parts[1]), sig); err != nil {
		return Principal{}, invalid("bad JWT signature: %v", err)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Principal{}, invalid("the JWT payload is not base64url")
	}
	return o.claims(body, h.Kid)
}

func verifySignature(alg algorithm, pub crypto.PublicKey, signed, sig []byte) error {
	hf := alg.hash.New()
	hf.Write(signed)
	digest := hf.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if !alg.rsa {
			return errors.New("an EC algorithm with an RSA key")
		}
		if alg.pss {
			return rsa.VerifyPSS(k, alg.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(k, alg.hash, digest, sig)
	case *ecdsa.PublicKey:
		if alg.rsa || k.Curve.Params().BitSize != alg.curve {
			return errors.New("the key's curve does not match the algorithm")
		}
		size := (alg.curve + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("an ECDSA signature of %d bytes, %d expected", len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return errors.New("verification failed")
		}
		return nil
	}
	return errors.New("unsupported key")
}

// claims checks the registered claims and maps the staff and roles claims.
func (o *OIDC) claims(body []byte, kid string) (Principal, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		return Principal{}, invalid("the JWT claims are not a JSON object")
	}
	if iss, _ := c["iss"].(string); iss != o.cfg.Issuer {
		return Principal{}, invalid("JWT from another issuer (%q)", iss)
	}
	if !audienceHas(c["aud"], o.cfg.Audience) {
		return Principal{}, invalid("JWT for another audience")
	}
	now := o.now()
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return Principal{}, err
	case !ok:
		return Principal{}, invalid("JWT without an expiry (exp)")
	case !now.Before(exp.Add(o.cfg.Leeway)):
		return Principal{}, invalid("the JWT expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := numericDate(c, "nbf"); err != nil {
		return Principal{}, err
	} else if ok && now.Add(o.cfg.Leeway).Before(nbf) {
		return Principal{}, invalid("the JWT is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok, err := numericDate(c, "iat"); err != nil {
		return Principal{}, err
	} else if ok && now.Add(o.cfg.Leeway).Before(iat) {
		return Principal{}, invalid("the JWT was issued in the future")
	}
	staff, _ := claimPath(c, o.cfg.StaffClaim).(string)
	if !ValidStaffID(staff) {
		return Principal{}, invalid("the JWT's %s claim is not a staff id (1-64 of A-Z a-z 0-9 _ . : -)", o.cfg.StaffClaim)
	}
	var names []string
	switch v := claimPath(c, o.cfg.RolesClaim).(type) {
	case string:
		names = strings.Fields(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				names = append(names, s)
			}
		}
	}
	return Principal{StaffID: staff, Roles: knownRoles(names), Via: "oidc:" + kid, Expires: exp}, nil
}

// audienceHas: aud is the audience, or an array holding it.
func audienceHas(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if s, _ := x.(string); s == want {
				return true
			}
		}
	}
	return false
}

// numericDate reads a NumericDate claim (seconds since the epoch, possibly
// fractional).
func numericDate(c map[string]any, name string) (time.Time, bool, error) {
	v, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, false, invalid("the JWT's %s claim is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e11 {
		return time.Time{}, false, invalid("the JWT's %s claim is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// claimPath follows a dotted path through nested objects.
func claimPath(c map[string]any, path string) any {
	var cur any = c
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}
