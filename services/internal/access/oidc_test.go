package access_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/services/internal/access"
)

const (
	issuer   = "https://idp.example.test/realms/touchstream"
	audience = "touchstream-query"
)

// signer is a test identity provider's key: it mints JWTs and publishes its JWK.
type signer struct {
	kid string
	alg string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func newRSA(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: "RS256", rsa: k}
}

func newEC(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: "ES256", ec: k}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *signer) jwk() map[string]string {
	if s.rsa != nil {
		return map[string]string{"kty": "RSA", "kid": s.kid, "use": "sig", "alg": s.alg,
			"n": b64(s.rsa.N.Bytes()), "e": b64(big.NewInt(int64(s.rsa.E)).Bytes())}
	}
	pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	return map[string]string{"kty": "EC", "kid": s.kid, "use": "sig", "crv": "P-256",
		"x": b64(pad(s.ec.X.Bytes())), "y": b64(pad(s.ec.Y.Bytes()))}
}

// mint signs claims with a header of the signer's alg and kid (header overrides).
func (s *signer) mint(t *testing.T, claims map[string]any, header map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": s.alg, "kid": s.kid, "typ": "at+jwt"}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(claims)
	signed := b64(hb) + "." + b64(cb)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	switch {
	case h["alg"] == "none":
		return signed + "."
	case s.rsa != nil:
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, sum[:])
	default:
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, s.ec, sum[:])
		pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
		sig = append(pad(r.Bytes()), pad(ss.Bytes())...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + b64(sig)
}

func writeJWKS(t *testing.T, signers ...*signer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksBody(signers...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func jwksBody(signers ...*signer) []byte {
	var keys []map[string]string
	for _, s := range signers {
		keys = append(keys, s.jwk())
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

func claims(mod map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": issuer, "aud": []string{audience, "account"}, "sub": "ret-li01",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"realm_access": map[string]any{"roles": []string{"retention", "offline_access", "agent"}}}
	for k, v := range mod {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestOIDC(t *testing.T) {
	rs, ec := newRSA(t, "rsa-1"), newEC(t, "ec-1")
	stranger := newRSA(t, "rsa-1") // same kid, another key: a forgery
	o, err := access.NewOIDC(t.Context(), access.OIDCConfig{Issuer: issuer, Audience: audience,
		JWKSFile: writeJWKS(t, rs, ec), RolesClaim: "realm_access.roles"})
	if err != nil {
		t.Fatal(err)
	}
	hmacToken := func() string {
		hb, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": "rsa-1"})
		cb, _ := json.Marshal(claims(nil))
		m := hmac.New(sha256.New, []byte("secret"))
		m.Write([]byte(b64(hb) + "." + b64(cb)))
		return b64(hb) + "." + b64(cb) + "." + b64(m.Sum(nil))
	}
	long := time.Now().Add(-10 * time.Minute)
	for _, tc := range []struct {
		name  string
		token string
		want  []access.Role // nil: refused
		why   string        // a part of the refusal's reason
	}{
		{"RS256", rs.mint(t, claims(nil), nil), []access.Role{access.Agent, access.Retention}, ""},
		{"ES256", ec.mint(t, claims(nil), nil), []access.Role{access.Agent, access.Retention}, ""},
		{"audience as a string", rs.mint(t, claims(map[string]any{"aud": audience}), nil), []access.Role{access.Agent, access.Retention}, ""},
		{"expired within the leeway", rs.mint(t, claims(map[string]any{"exp": time.Now().Add(-30 * time.Second).Unix()}), nil), []access.Role{access.Agent, access.Retention}, ""},
		{"no known role", rs.mint(t, claims(map[string]any{"realm_access": map[string]any{"roles": []string{"offline_access"}}}), nil), []access.Role{}, ""},
		{"wrong issuer", rs.mint(t, claims(map[string]any{"iss": "https://evil.example.test"}), nil), nil, "another issuer"},
		{"wrong audience", rs.mint(t, claims(map[string]any{"aud": "other-api"}), nil), nil, "another audience"},
		{"expired", rs.mint(t, claims(map[string]any{"exp": long.Unix()}), nil), nil, "expired"},
		{"no expiry", rs.mint(t, claims(map[string]any{"exp": nil}), nil), nil, "without an expiry"},
		{"not yet valid", rs.mint(t, claims(map[string]any{"nbf": time.Now().Add(10 * time.Minute).Unix()}), nil), nil, "not valid before"},
		{"issued in the future", rs.mint(t, claims(map[string]any{"iat": time.Now().Add(10 * time.Minute).Unix()}), nil), nil, "future"},
		{"bad signature", stranger.mint(t, claims(nil), nil), nil, "bad JWT signature"},
		{"tampered claims", tamper(rs.mint(t, claims(nil), nil)), nil, "bad JWT signature"},
		{"unknown kid", rs.mint(t, claims(nil), map[string]any{"kid": "rsa-9"}), nil, "unknown key"},
		{"no kid", rs.mint(t, claims(nil), map[string]any{"kid": nil}), nil, "without a key id"},
		{"alg none", rs.mint(t, claims(nil), map[string]any{"alg": "none"}), nil, "alg none"},
		{"HS256 with the public key's kid", hmacToken(), nil, "not accepted"},
		{"ES256 header on an RSA key", rs.mint(t, claims(nil), map[string]any{"alg": "ES256"}), nil, "is for RS256"},
		{"an id token type", rs.mint(t, claims(nil), map[string]any{"typ": "id+jwt"}), nil, "not an access token"},
		{"an e-mail as staff id", rs.mint(t, claims(map[string]any{"sub": "li@example.test"}), nil), nil, "not a staff id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := o.Authenticate(t.Context(), tc.token)
			if tc.want == nil {
				if !errors.Is(err, access.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.why) {
					t.Fatalf("got %+v, %v; want refused with %q", p, err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.StaffID != "ret-li01" || !strings.HasPrefix(p.Via, "oidc:") || p.Expires.IsZero() {
				t.Errorf("principal %+v", p)
			}
			if diff := cmp.Diff(tc.want, p.Roles, cmpEmpty); diff != "" {
				t.Errorf("roles (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("a space-separated roles claim", func(t *testing.T) {
		o, err := access.NewOIDC(t.Context(), access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSFile: writeJWKS(t, rs),
			RolesClaim: "scope", StaffClaim: "staff_id"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := o.Authenticate(t.Context(), rs.mint(t, claims(map[string]any{"scope": "openid manager supervisor", "staff_id": "mgr-01"}), nil))
		if err != nil {
			t.Fatal(err)
		}
		if p.StaffID != "mgr-01" || !p.Has(access.Manager) || !p.Has(access.Supervisor) {
			t.Errorf("principal %+v", p)
		}
	})
	t.Run("not a JWT is for another source", func(t *testing.T) {
		tokens, _ := access.NewStaticTokens([]access.Staff{{ID: "a", Roles: []access.Role{access.Agent}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("dev-agent-token")}}}})
		p, err := access.Chain(o, tokens).Authenticate(t.Context(), "dev-agent-token")
		if err != nil || p.StaffID != "a" {
			t.Errorf("got %+v, %v", p, err)
		}
		if _, err := access.Chain(o, tokens).Authenticate(t.Context(), "nobody"); !errors.Is(err, access.ErrUnauthenticated) {
			t.Errorf("unknown token: %v", err)
		}
	})
}

var cmpEmpty = cmp.Transformer("empty", func(r []access.Role) []access.Role {
	if r == nil {
		return []access.Role{}
	}
	return r
})

// tamper raises the claims' roles without signing again.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(b, &c)
	c["realm_access"] = map[string]any{"roles": []string{"supervisor"}}
	b, _ = json.Marshal(c)
	return parts[0] + "." + b64(b) + "." + parts[2]
}

// TestOIDCKeySetURL: the provider rotates its key; a token signed with the new kid
// reads the set again.
func TestOIDCKeySetURL(t *testing.T) {
	old, next := newEC(t, "k-2025"), newEC(t, "k-2026")
	var served atomic.Value
	served.Store(jwksBody(old))
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(served.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	o, err := access.NewOIDC(t.Context(), access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSURL: srv.URL, RolesClaim: "realm_access.roles"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Authenticate(t.Context(), old.mint(t, claims(nil), nil)); err != nil {
		t.Fatalf("the first key: %v", err)
	}
	served.Store(jwksBody(old, next))
	// The set was read at start: an unknown kid reads it again only 30 s after the
	// last read, so a flood of forged kids cannot hammer the provider.
	if _, err := o.Authenticate(t.Context(), next.mint(t, claims(nil), nil)); err == nil {
		t.Fatal("a kid unknown at the last read was accepted before the set was read again")
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads of the key set, want 1 (unknown kids are rate-limited)", n)
	}
	later := time.Now().Add(31 * time.Second)
	access.SetClock(o, func() time.Time { return later })
	if _, err := o.Authenticate(t.Context(), next.mint(t, claims(map[string]any{"exp": later.Add(time.Minute).Unix()}), nil)); err != nil {
		t.Fatalf("the rotated key, 31 s later: %v", err)
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads of the key set, want 2", n)
	}
	// The provider down: the keys already read keep working.
	srv.Close()
	if _, err := o.Authenticate(t.Context(), old.mint(t, claims(map[string]any{"exp": later.Add(time.Minute).Unix()}), nil)); err != nil {
		t.Errorf("a known key while the provider is down: %v", err)
	}
}

func TestOIDCConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  access.OIDCConfig
		want []string
	}{
		{"empty", access.OIDCConfig{}, []string{"Issuer", "Audience", "JWKSFile or JWKSURL"}},
		{"bad claim path", access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSFile: "x", RolesClaim: "realm_access..roles"}, []string{"RolesClaim"}},
		{"huge leeway", access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSFile: "x", Leeway: time.Hour}, []string{"Leeway"}},
		{"ftp", access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSURL: "ftp://x"}, []string{"JWKSURL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not name %s", err, w)
				}
			}
		})
	}
	t.Run("a key set without usable keys", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "jwks.json")
		_ = os.WriteFile(path, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"},{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}`), 0o600)
		_, err := access.NewOIDC(t.Context(), access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSFile: path})
		if err == nil || !strings.Contains(err.Error(), "no usable signature key") || !strings.Contains(err.Error(), "at least 2048") {
			t.Errorf("got %v", err)
		}
	})
}

func FuzzOIDC(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.e30.AAAA")
	path := filepath.Join(f.TempDir(), "jwks.json")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := &signer{kid: "ec-1", alg: "ES256", ec: k}
	_ = os.WriteFile(path, jwksBody(s), 0o600)
	o, err := access.NewOIDC(f.Context(), access.OIDCConfig{Issuer: issuer, Audience: audience, JWKSFile: path})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := o.Authenticate(t.Context(), token)
		if err == nil {
			t.Fatalf("a token nobody signed was accepted: %+v", p)
		}
		if !errors.Is(err, access.ErrUnauthenticated) {
			t.Fatalf("refusal %v is not ErrUnauthenticated", err)
		}
	})
}
