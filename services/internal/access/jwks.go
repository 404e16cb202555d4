package access

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
)

// jwk is one key of a JSON Web Key Set (RFC 7517) as far as verification needs it.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// verifyKey is a usable public key of the set.
type verifyKey struct {
	kid string
	alg string // "" when the set does not pin one
	pub crypto.PublicKey
}

// maxJWKS bounds a key set document.
const maxJWKS = 1 << 20

// parseJWKS reads the signature keys of a key set: RSA (at least 2048 bits) and EC
// (P-256, P-384, P-521) keys with a kid. Keys for encryption, of other types or
// without a kid are skipped; a set with no usable key is an error.
func parseJWKS(b []byte) (map[string]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	out := map[string]verifyKey{}
	var errs []error
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		var pub crypto.PublicKey
		var err error
		switch k.Kty {
		case "RSA":
			pub, err = rsaKey(k)
		case "EC":
			pub, err = ecKey(k)
		default:
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d] (kid %s): %w", i, k.Kid, err))
			continue
		}
		if _, dup := out[k.Kid]; dup {
			errs = append(errs, fmt.Errorf("keys[%d]: kid %s listed twice", i, k.Kid))
			continue
		}
		out[k.Kid] = verifyKey{kid: k.Kid, alg: k.Alg, pub: pub}
	}
	if len(out) == 0 {
		// A key the set holds beside usable ones (a new type, a broken entry) does not
		// take the usable ones down; a set with none is an error naming why.
		return nil, errors.Join(append(errs, errors.New("no usable signature key (RSA or EC, with a kid)"))...)
	}
	return out, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("not base64url")
	}
	return new(big.Int).SetBytes(b), nil
}

func rsaKey(k jwk) (*rsa.PublicKey, error) {
	n, err := b64Int(k.N)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	e, err := b64Int(k.E)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	if n.BitLen() < 2048 {
		return nil, fmt.Errorf("RSA key of %d bits: at least 2048 required", n.BitLen())
	}
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
		return nil, errors.New("e: out of range")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func ecKey(k jwk) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch k.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("crv %q: P-256, P-384 or P-521 required", k.Crv)
	}
	xb, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil {
		return nil, errors.New("x: not base64url")
	}
	yb, err := base64.RawURLEncoding.DecodeString(k.Y)
	if err != nil {
		return nil, errors.New("y: not base64url")
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(xb) != size || len(yb) != size {
		return nil, fmt.Errorf("x, y: %d bytes each required for %s", size, k.Crv)
	}
	// The uncompressed point, checked to be on the curve.
	point := append(append([]byte{4}, xb...), yb...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("not a point of %s: %w", k.Crv, err)
	}
	return pub, nil
}

// readJWKS reads a key set from a file.
func readJWKS(path string) (map[string]verifyKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKS {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKS)
	}
	return parseJWKS(b)
}

// fetchJWKS reads a key set from a URL.
func fetchJWKS(ctx context.Context, client *http.Client, url string) (map[string]verifyKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d", res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKS {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKS)
	}
	return parseJWKS(b)
}
