package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
)

// StaffFile is the content of a static token file (deploy/access.json): staff
// members, their roles and the SHA-256 hashes of their tokens.
type StaffFile struct {
	Comment string  `json:"comment,omitempty"`
	Staff   []Staff `json:"staff"`
}

// Staff is one staff member of a static token file.
type Staff struct {
	// ID is the staff id the audit log and the desk's commands record.
	ID string `json:"id"`
	// Roles are the member's roles, each one of AllRoles.
	Roles []Role `json:"roles"`
	// Tokens are the member's bearer tokens, stored only as SHA-256 hashes. More than
	// one lets a member rotate without downtime: add the new one, hand it over, remove
	// the old one.
	Tokens []Token `json:"tokens"`
	// Comment is free text for operators.
	Comment string `json:"comment,omitempty"`
}

// Token is one static token: an id (named in logs and rotation runbooks) and the hex
// SHA-256 of the token. The token itself is never stored.
type Token struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

var (
	tokenHash = regexp.MustCompile(`^[0-9a-f]{64}$`)
	tokenID   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// HashToken returns the hex SHA-256 of a token, as a token file stores it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// StaticTokens authenticates the tokens of a token file.
type StaticTokens struct {
	byHash map[string]Principal // token hash -> principal
}

var _ Authenticator = (*StaticTokens)(nil)

// LoadStaticTokens reads and validates a token file. Unknown fields are refused, and
// every error names the field.
func LoadStaticTokens(path string) (*StaticTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("access tokens: %w", err)
	}
	st, err := ParseStaticTokens(b)
	if err != nil {
		return nil, fmt.Errorf("access tokens: %s: %w", path, err)
	}
	return st, nil
}

// ParseStaticTokens decodes and validates the content of a token file.
func ParseStaticTokens(b []byte) (*StaticTokens, error) {
	var f StaffFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return NewStaticTokens(f.Staff)
}

// NewStaticTokens validates staff members and indexes their tokens. The error joins
// one error per problem, each naming its field.
func NewStaticTokens(staff []Staff) (*StaticTokens, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(staff) == 0 {
		add("staff: at least one staff member is required")
	}
	st := &StaticTokens{byHash: map[string]Principal{}}
	ids := map[string]int{}
	where := map[string]string{} // token hash -> where it was first seen
	for i, s := range staff {
		at := fmt.Sprintf("staff[%d]", i)
		if !ValidStaffID(s.ID) {
			add("%s.id %q: must be 1-64 characters of [A-Za-z0-9_.:-] (an account id, never a name or an e-mail address)", at, s.ID)
		} else {
			if j, dup := ids[s.ID]; dup {
				add("%s.id %q: already used by staff[%d]", at, s.ID, j)
			}
			ids[s.ID] = i
			at = fmt.Sprintf("staff[%d] (%s)", i, s.ID)
		}
		if len(s.Roles) == 0 {
			add("%s.roles: at least one role is required (%s)", at, joinRoles(AllRoles, ", "))
		}
		for k, r := range s.Roles {
			switch {
			case !slices.Contains(AllRoles, r):
				add("%s.roles[%d] %q: unknown role; the roles are %s", at, k, r, joinRoles(AllRoles, ", "))
			case slices.Index(s.Roles, r) != k:
				add("%s.roles[%d] %q: listed twice", at, k, r)
			}
		}
		if len(s.Tokens) == 0 {
			add("%s.tokens: at least one token is required", at)
		}
		seen := map[string]bool{}
		for k, tok := range s.Tokens {
			if !tokenID.MatchString(tok.ID) {
				add("%s.tokens[%d].id %q: must be 1-64 characters of [A-Za-z0-9._-]", at, k, tok.ID)
			} else if seen[tok.ID] {
				add("%s.tokens[%d].id %q: listed twice", at, k, tok.ID)
			}
			seen[tok.ID] = true
			if !tokenHash.MatchString(tok.SHA256) {
				add("%s.tokens[%d].sha256: must be the 64 lowercase hex digits of the token's SHA-256 (never the token itself)", at, k)
				continue
			}
			if other, dup := where[tok.SHA256]; dup {
				add("%s.tokens[%d].sha256: the same token is already %s: a token identifies exactly one staff member", at, k, other)
				continue
			}
			where[tok.SHA256] = fmt.Sprintf("%s.tokens[%d]", at, k)
			names := make([]string, len(s.Roles))
			for j, r := range s.Roles {
				names[j] = string(r)
			}
			st.byHash[tok.SHA256] = Principal{StaffID: s.ID, Roles: knownRoles(names), Via: "static:" + tok.ID}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return st, nil
}

// Authenticate returns the principal of a token of the file. A token the file does not
// hold is errNotMine (an unknown token, when no other source claims it either).
func (s *StaticTokens) Authenticate(_ context.Context, token string) (Principal, error) {
	p, ok := s.byHash[HashToken(token)]
	if !ok {
		return Principal{}, errNotMine
	}
	p.Roles = slices.Clone(p.Roles)
	return p, nil
}
