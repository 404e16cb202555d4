package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// Channel is one untrusted channel system allowed to write through the gateway, as
// configured in deploy/channels.json.
type Channel struct {
	// Name identifies the channel in metrics, logs and the NATS request subject
	// (ingest.<name>.>): [a-z0-9-].
	Name string `json:"name"`
	// Source is the channel's own CloudEvents source. An event whose source differs is
	// refused for this channel.
	Source string `json:"source"`
	// AllowedTypes lists the event types the channel may write. An entry "family.*"
	// allows every type of the family. Several channels may share a type; command
	// results with a single producer (ReservedTypes) are never allowed.
	AllowedTypes []string `json:"allowed_types"`
	// APIKeys are the channel's HTTP keys, stored only as SHA-256 hashes. More than one
	// key lets a channel rotate without downtime.
	APIKeys []APIKey `json:"api_keys"`
	// NATSUser is the NATS identity of the channel's request-reply door; NATS
	// permissions allow it to publish only on ingest.<name>.>.
	NATSUser string `json:"nats_user"`
	// NATSNkey is the public nkey (U...) the channel system authenticates with on NATS;
	// empty: the channel has no NATS access. It is public: the channel keeps the seed.
	NATSNkey string `json:"nats_nkey,omitempty"`
	// MaxAge overrides the late-arrival limit (for a migration channel importing
	// history); zero keeps the gateway's default.
	MaxAge Duration `json:"max_age,omitzero"`
	// RateLimit bounds the events per second the channel may send; nil: unlimited.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// Comment is free text for operators.
	Comment string `json:"comment,omitempty"`
}

// APIKey is one key of a channel: an id (named in logs and rotation runbooks) and the
// hex SHA-256 of the key. The key itself is never stored.
type APIKey struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

// RateLimit is a token bucket: EventsPerSecond sustained, Burst at once. A request
// costs one token per event; a request of more events than Burst is refused (413).
type RateLimit struct {
	EventsPerSecond float64 `json:"events_per_second"`
	Burst           int     `json:"burst"`
}

// Duration is a duration written as a Go duration string ("720h") or a number of days
// ("3650d").
type Duration time.Duration

// MarshalJSON writes whole days as "Nd", anything else as a Go duration.
func (d Duration) MarshalJSON() ([]byte, error) {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return json.Marshal(strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d")
	}
	return json.Marshal(td.String())
}

// UnmarshalJSON reads "3650d" or a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`must be a string like "720h" or "3650d"`)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses "Nd" (days) or a Go duration string.
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100*366 {
			return 0, fmt.Errorf("duration %q: want a whole number of days like \"3650d\"", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a Go duration like \"720h\" or days like \"3650d\"", s)
	}
	return v, nil
}

// ReservedTypes have exactly one producer, which is not a channel: no channel may be
// allowed them, by name or by a family wildcard.
var ReservedTypes = map[string]string{
	"points.redeemed":         "the redemption service",
	"points.adjusted":         "the club's operators (touchstream loyalty adjust)",
	"loyalty.rules_activated": "the club's operators (touchstream loyalty activate)",
	"alert.acknowledged":      "the console's command service",
	"alert.closed":            "the console's command service",
	"churn.model_activated":   "the retention team's operators (touchstream churn activate)",
	"clock.ticked":            "the scheduler",
	"customer.erased":         "the erasure command (touchstream erase)",
}

// ChannelFile is the content of deploy/channels.json.
type ChannelFile struct {
	Comment  string    `json:"comment,omitempty"`
	Channels []Channel `json:"channels"`
}

var (
	channelName = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$`)
	typeName    = regexp.MustCompile(`^[a-z][a-z_]*\.[a-z][a-z_]*$`)
	typeFamily  = regexp.MustCompile(`^[a-z][a-z_]*\.\*$`)
	keyHash     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	keyID       = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	natsUser    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// LoadChannels reads and validates a channel file. Unknown fields are refused, and
// every error names the field.
func LoadChannels(path string) ([]Channel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	chs, err := ParseChannels(b)
	if err != nil {
		return nil, fmt.Errorf("channels: %s: %w", path, err)
	}
	return chs, nil
}

// ParseChannels decodes and validates the content of a channel file.
func ParseChannels(b []byte) ([]Channel, error) {
	var f ChannelFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := ValidateChannels(f.Channels); err != nil {
		return nil, err
	}
	return f.Channels, nil
}

// ValidateChannels checks every channel and what channels must not share: names,
// sources, NATS users and keys. The error joins one error per problem.
func ValidateChannels(chs []Channel) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(chs) == 0 {
		add("channels: at least one channel is required")
	}
	names := map[string]int{}
	sources := map[string]int{}
	users := map[string]int{}
	hashes := map[string]string{}
	for i, c := range chs {
		at := fmt.Sprintf("channels[%d]", i)
		if !channelName.MatchString(c.Name) {
			add("%s.name %q: must be 1-32 characters of [a-z0-9-], not starting or ending with '-'", at, c.Name)
		} else {
			if j, dup := names[c.Name]; dup {
				add("%s.name %q: already used by channels[%d]", at, c.Name, j)
			}
			names[c.Name] = i
			at = fmt.Sprintf("channels[%d] (%s)", i, c.Name)
		}
		switch {
		case c.Source == "":
			add("%s.source: required", at)
		case len(c.Source) > 256 || strings.ContainsFunc(c.Source, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			add("%s.source: at most 256 bytes, without spaces or control characters", at)
		default:
			if j, dup := sources[c.Source]; dup {
				add("%s.source %q: already used by channels[%d]: every channel has its own source", at, c.Source, j)
			}
			sources[c.Source] = i
		}
		if len(c.AllowedTypes) == 0 {
			add("%s.allowed_types: at least one type is required", at)
		}
		seenType := map[string]bool{}
		for k, t := range c.AllowedTypes {
			switch {
			case seenType[t]:
				add("%s.allowed_types[%d] %q: listed twice", at, k, t)
			case typeFamily.MatchString(t):
				// A family must not cover a single-producer type: the channel's NATS
				// permission (ingest.<channel>.<family>.*) would.
				for _, r := range slices.Sorted(maps.Keys(ReservedTypes)) {
					if strings.HasPrefix(r, strings.TrimSuffix(t, "*")) {
						add("%s.allowed_types[%d] %q: covers %s, which only %s produces: list the family's types instead", at, k, t, r, ReservedTypes[r])
					}
				}
			case !typeName.MatchString(t):
				add("%s.allowed_types[%d] %q: must be a type name (family.name of [a-z_]) or a family wildcard (family.*)", at, k, t)
			default:
				if who, ok := ReservedTypes[t]; ok {
					add("%s.allowed_types[%d] %q: only %s produces it", at, k, t, who)
				}
			}
			seenType[t] = true
		}
		if len(c.APIKeys) == 0 {
			add("%s.api_keys: at least one key is required", at)
		}
		seenKey := map[string]bool{}
		for k, key := range c.APIKeys {
			if !keyID.MatchString(key.ID) {
				add("%s.api_keys[%d].id %q: must be 1-64 characters of [A-Za-z0-9._-]", at, k, key.ID)
			} else if seenKey[key.ID] {
				add("%s.api_keys[%d].id %q: listed twice", at, k, key.ID)
			}
			seenKey[key.ID] = true
			if !keyHash.MatchString(key.SHA256) {
				add("%s.api_keys[%d].sha256: must be the 64 lowercase hex digits of the key's SHA-256 (never the key itself)", at, k)
				continue
			}
			if other, dup := hashes[key.SHA256]; dup {
				add("%s.api_keys[%d].sha256: the same key is already %s: a key identifies exactly one channel", at, k, other)
			}
			hashes[key.SHA256] = fmt.Sprintf("%s.api_keys[%d]", at, k)
		}
		if !natsUser.MatchString(c.NATSUser) {
			add("%s.nats_user %q: required, 1-64 characters of [A-Za-z0-9_-]", at, c.NATSUser)
		} else {
			if j, dup := users[c.NATSUser]; dup {
				add("%s.nats_user %q: already used by channels[%d]", at, c.NATSUser, j)
			}
			users[c.NATSUser] = i
		}
		if c.NATSNkey != "" && !nkeys.IsValidPublicUserKey(c.NATSNkey) {
			add("%s.nats_nkey: not a public user nkey (U...)", at)
		}
		if c.MaxAge < 0 {
			add("%s.max_age: must not be negative", at)
		}
		if r := c.RateLimit; r != nil {
			if !(r.EventsPerSecond > 0) || r.EventsPerSecond > 1e7 {
				add("%s.rate_limit.events_per_second %v: must be positive (at most 10,000,000)", at, r.EventsPerSecond)
			}
			if r.Burst < 1 || r.Burst > 10_000_000 {
				add("%s.rate_limit.burst %d: must be between 1 and 10,000,000", at, r.Burst)
			}
		}
	}
	return errors.Join(errs...)
}

// HashKey returns the hex SHA-256 of an API key, as stored in api_keys[].sha256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// allows reports whether the channel may write events of type t.
func (c *Channel) allows(t string) bool {
	if _, reserved := ReservedTypes[t]; reserved {
		return false
	}
	for _, a := range c.AllowedTypes {
		if a == t {
			return true
		}
		if fam, ok := strings.CutSuffix(a, "*"); ok && strings.HasPrefix(t, fam) && typeName.MatchString(t) {
			return true
		}
	}
	return false
}
