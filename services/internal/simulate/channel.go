package simulate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Channel is a channel system the simulator writes as: its gateway identity.
type Channel struct {
	// Name is the channel's name in deploy/channels.json ("store", "recharge", ...).
	Name string
	// Source is the channel's CloudEvents source; the gateway refuses any other.
	Source string
	// AllowedTypes are the types the gateway lets the channel write ("family.*" allows
	// a family).
	AllowedTypes []string
	// MaxAge is the channel's late-arrival limit; zero: the gateway's default.
	MaxAge time.Duration
	// APIKey is the channel's key in clear (a development key).
	APIKey string
}

// Allows reports whether the channel may write events of type t.
func (c *Channel) Allows(t string) bool {
	for _, a := range c.AllowedTypes {
		if a == t {
			return true
		}
		if fam, ok := strings.CutSuffix(a, "*"); ok && strings.HasSuffix(fam, ".") && strings.HasPrefix(t, fam) {
			return true
		}
	}
	return false
}

// DefaultMaxAge is the gateway's default late-arrival limit (events.DefaultLimits).
const DefaultMaxAge = 30 * 24 * time.Hour

// ageMargin keeps history events clear of their channel's late-arrival limit: they
// are sent some time after they are generated.
const ageMargin = 6 * time.Hour

// checkRoutes verifies that every channel of the mix exists and may write the types
// of its kind, that the store channel may write visits and counter offers, and that
// the initial load and history channels exist.
func checkRoutes(p *Params, chs map[string]*Channel) error {
	var errs []error
	need := func(field, name string, types ...string) {
		ch, ok := chs[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: channel %q is not configured", field, name))
			return
		}
		for _, t := range types {
			if !ch.Allows(t) {
				errs = append(errs, fmt.Errorf("%s: channel %q may not write %s", field, name, t))
			}
		}
	}
	for _, k := range Kinds() {
		for _, name := range slices.Sorted(mapKeys(p.ChannelMix[k])) {
			if p.ChannelMix[k][name] <= 0 {
				continue
			}
			types := kindTypes[k]
			if name == storeChannel {
				types = append(slices.Clone(types), "store.visited")
			}
			need("channel_mix."+k+"."+name, name, types...)
		}
	}
	if p.Offers.StoreOfferShare > 0 {
		need("offers.store_offer_share", storeChannel, "store.visited", "offer.presented", "offer.accepted")
	}
	if p.Population.InitialLoadChannel != "" {
		need("population.initial_load_channel", p.Population.InitialLoadChannel, "customer.registered")
	}
	if p.HistoryChannel != "" {
		need("history_channel", p.HistoryChannel)
	}
	return errors.Join(errs...)
}
