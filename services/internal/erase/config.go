package erase

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

// Privacy is the content of deploy/privacy.json: how long clients may cache data keys
// (which bounds when an erasure is complete) and the retention limits of personal data.
type Privacy struct {
	Comment string `json:"comment,omitempty"`
	// KeyCacheTTL is the longest any process caches a data key (events.KeyClient's
	// CacheTTL, in the gateway, the SDK producers, the projector, the query API). An
	// erasure is complete once it has passed since the key was deleted.
	KeyCacheTTL time.Duration `json:"-"`
	// Retention limits; nil: personal data is kept until an erasure is requested.
	Retention *Retention `json:"retention,omitempty"`
}

// Retention is a retention limit for personal data.
type Retention struct {
	// TerminatedFor: the personal data of a customer whose subscription was terminated
	// (the event time of subscription.terminated) longer ago than this is erased by
	// the sweep, unless the customer registered again since.
	TerminatedFor time.Duration `json:"-"`
	// Operator is the account id the sweep's erasures are recorded under.
	Operator string `json:"operator"`
	// MaxPerSweep bounds the customers one sweep erases (the rest wait for the next).
	MaxPerSweep int `json:"max_per_sweep"`
}

// Defaults of deploy/privacy.json.
const (
	DefaultKeyCacheTTL    = time.Minute
	DefaultSweepOperator  = "retention-sweep"
	DefaultMaxPerSweep    = 1000
	ReasonRetention       = "retention"
	ReasonCustomerRequest = "customer_request"
)

var (
	reasonCode = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)
	operatorID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

// privacyFile is the JSON layout, durations written as "1m" or "1095d".
type privacyFile struct {
	Comment     string `json:"comment,omitempty"`
	KeyCacheTTL string `json:"key_cache_ttl"`
	Retention   *struct {
		TerminatedFor string `json:"terminated_customers"`
		Operator      string `json:"operator"`
		MaxPerSweep   int    `json:"max_per_sweep"`
	} `json:"retention"`
}

// LoadPrivacy reads and validates deploy/privacy.json. Unknown fields are refused and
// every error names its field.
func LoadPrivacy(path string) (Privacy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Privacy{}, fmt.Errorf("privacy: %w", err)
	}
	p, err := ParsePrivacy(b)
	if err != nil {
		return Privacy{}, fmt.Errorf("privacy: %s: %w", path, err)
	}
	return p, nil
}

// ParsePrivacy decodes and validates the content of a privacy file.
func ParsePrivacy(b []byte) (Privacy, error) {
	var f privacyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Privacy{}, err
	}
	if dec.More() {
		return Privacy{}, errors.New("trailing data after the JSON object")
	}
	var errs []error
	p := Privacy{Comment: f.Comment, KeyCacheTTL: DefaultKeyCacheTTL}
	if f.KeyCacheTTL != "" {
		d, err := gateway.ParseDuration(f.KeyCacheTTL)
		if err != nil {
			errs = append(errs, fmt.Errorf("key_cache_ttl: %w", err))
		}
		p.KeyCacheTTL = d
	}
	if r := f.Retention; r != nil {
		p.Retention = &Retention{Operator: r.Operator, MaxPerSweep: r.MaxPerSweep}
		if r.TerminatedFor == "" {
			errs = append(errs, errors.New(`retention.terminated_customers: required, e.g. "1095d"`))
		} else if d, err := gateway.ParseDuration(r.TerminatedFor); err != nil {
			errs = append(errs, fmt.Errorf("retention.terminated_customers: %w", err))
		} else {
			p.Retention.TerminatedFor = d
		}
		if p.Retention.Operator == "" {
			p.Retention.Operator = DefaultSweepOperator
		}
		if p.Retention.MaxPerSweep == 0 {
			p.Retention.MaxPerSweep = DefaultMaxPerSweep
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Privacy{}, err
	}
	return p, p.Validate()
}

// Validate checks the settings; the error joins one error per field.
func (p Privacy) Validate() error {
	var errs []error
	if p.KeyCacheTTL <= 0 || p.KeyCacheTTL > time.Hour {
		errs = append(errs, fmt.Errorf("key_cache_ttl %s: want more than 0 and at most 1h (clients' key caches must be short)", p.KeyCacheTTL))
	}
	if r := p.Retention; r != nil {
		if r.TerminatedFor < 24*time.Hour {
			errs = append(errs, fmt.Errorf("retention.terminated_customers %s: want at least 1d", r.TerminatedFor))
		}
		if !operatorID.MatchString(r.Operator) {
			errs = append(errs, fmt.Errorf("retention.operator %q: 1-64 characters of A-Z a-z 0-9 _ . : - (an account id, not a name)", r.Operator))
		}
		if r.MaxPerSweep < 1 || r.MaxPerSweep > 100000 {
			errs = append(errs, fmt.Errorf("retention.max_per_sweep %d: want 1 to 100000", r.MaxPerSweep))
		}
	}
	return errors.Join(errs...)
}
