package query

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
)

// The JSON pointers the personal fields were sealed under (the payload fields of
// customer.registered and customer.updated): the additional data of each sealed value
// binds it to its pointer, so opening needs the same one.
const (
	pointerName     = "/name"
	pointerPhone    = "/phone"
	pointerIDNumber = "/id_number"
	pointerAddress  = "/address"
)

// errKeysUnavailable: the key source could not answer. The client may retry: 503.
var errKeysUnavailable = errors.New("data keys unavailable")

// sealedFields are one customer's sealed personal fields, as the profile keeps them.
type sealedFields struct {
	customer                       string
	name, phone, idNumber, address *events.Sealed
}

func sealedOf(p *customer360.Profile) sealedFields {
	return sealedFields{customer: p.CustomerID, name: p.Name, phone: p.Phone, idNumber: p.IDNumber, address: p.Address}
}

// personal is one customer's personal fields as a viewer sees them: masked or clear;
// nil when absent or erased.
type personal struct {
	name, phone, idNumber, address *string
	erased                         bool // some field's data key was erased
}

// openAll opens the personal fields of every item with one key lookup and presents
// them for the access level. A key the source no longer has was erased: the field is
// nil and the item marked erased.
func openAll(ctx context.Context, keys events.KeySource, access Access, items []sealedFields) ([]personal, error) {
	var ids []string
	seen := map[string]bool{}
	for _, it := range items {
		for _, s := range []*events.Sealed{it.name, it.phone, it.idNumber, it.address} {
			if s != nil && !seen[s.KeyID] {
				seen[s.KeyID] = true
				ids = append(ids, s.KeyID)
			}
		}
	}
	var found map[string]events.DataKey
	if len(ids) > 0 {
		var err error
		if found, err = keys.KeysByID(ctx, ids); err != nil {
			return nil, fmt.Errorf("%w: %w", errKeysUnavailable, err)
		}
	}
	out := make([]personal, len(items))
	for i, it := range items {
		p := &out[i]
		fields := []struct {
			pointer string
			sealed  *events.Sealed
			dst     **string
			mask    func(string) string
		}{
			{pointerName, it.name, &p.name, maskName},
			{pointerPhone, it.phone, &p.phone, maskPhone},
			{pointerIDNumber, it.idNumber, &p.idNumber, maskIDNumber},
			{pointerAddress, it.address, &p.address, maskAddress},
		}
		for _, f := range fields {
			if f.sealed == nil {
				continue
			}
			key, ok := found[f.sealed.KeyID]
			if !ok {
				p.erased = true
				continue
			}
			if key.Customer != it.customer {
				return nil, fmt.Errorf("open %s of customer %s: data key %s belongs to another customer", f.pointer, it.customer, key.ID)
			}
			clear, err := events.Open(key, f.pointer, *f.sealed)
			if err != nil {
				return nil, fmt.Errorf("customer %s: %w", it.customer, err)
			}
			if access != AccessFull {
				clear = f.mask(clear)
			}
			*f.dst = &clear
		}
	}
	return out, nil
}

// maskPhone keeps the first 3 and the last 4 digits of the normalised number:
// 13800138000 -> 138****8000. A number of 7 digits or fewer is masked whole.
func maskPhone(s string) string {
	d := customer360.NormalizePhone(s)
	n := len(d)
	if n <= 7 {
		return strings.Repeat("*", n)
	}
	return d[:3] + strings.Repeat("*", n-7) + d[n-4:]
}

// maskName keeps the first character: 张伟 -> 张*. A one-character name is masked whole.
func maskName(s string) string {
	r := []rune(s)
	if len(r) <= 1 {
		return strings.Repeat("*", len(r))
	}
	return string(r[0]) + "*"
}

// maskIDNumber keeps the first 6 and the last 4 characters: 110101199003074578 ->
// 110101********4578. A number of 10 characters or fewer is masked whole.
func maskIDNumber(s string) string {
	r := []rune(s)
	n := len(r)
	if n <= 10 {
		return strings.Repeat("*", n)
	}
	return string(r[:6]) + strings.Repeat("*", n-10) + string(r[n-4:])
}

// maskAddress keeps the first 6 characters (province, city, district in a Chinese
// address) and ends with "…"; an address of 6 characters or fewer keeps half.
func maskAddress(s string) string {
	r := []rune(s)
	keep := 6
	if len(r) <= keep {
		keep = len(r) / 2
	}
	return string(r[:keep]) + "…"
}
