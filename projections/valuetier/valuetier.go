// Package valuetier decides a customer's value tier (客户分级) from spend. It is a
// pure function of versioned configuration (deploy/tiers.json) and a customer's
// monthly spend, so every projection that needs the tier (customer 360, loyalty,
// churn) computes the same answer from the same events without reading each other.
//
// Spend is money the customer brings: prepaid recharges net of reversals, postpaid
// bills net of adjustments, bucketed by calendar month in the operator's time zone.
// The tier compares the average of the last Window months (the current one included)
// with each tier's minimum, highest tier first. Few tiers, simple rules: the point is to
// spend service effort where it pays.
package valuetier

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Config is the content of deploy/tiers.json.
type Config struct {
	Version  int    `json:"version"`
	TimeZone string `json:"time_zone"` // IANA name; months are cut in this zone
	Window   int    `json:"window_months"`
	Tiers    []Tier `json:"tiers"` // highest first
	location *time.Location
}

// Tier is one level and the average monthly spend it takes, in fen.
type Tier struct {
	Name          string `json:"name"`
	MinMonthlyFen int64  `json:"min_monthly_fen"`
	Description   string `json:"description,omitempty"`
}

// Default is the tier table used when no file is given.
func Default() Config {
	c := Config{Version: 1, TimeZone: "Asia/Shanghai", Window: 3, Tiers: []Tier{
		{Name: "platinum", MinMonthlyFen: 50000},
		{Name: "gold", MinMonthlyFen: 15000},
		{Name: "silver", MinMonthlyFen: 6000},
		{Name: "bronze", MinMonthlyFen: 0},
	}}
	if err := c.Validate(); err != nil {
		panic(err) // the built-in table is valid
	}
	return c
}

// Load reads and validates a tier table.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("value tiers: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("value tiers: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("value tiers: %s: %w", path, err)
	}
	return c, nil
}

// Validate checks the table: at least one tier, minimums strictly decreasing, the
// lowest at zero so every customer has a tier.
func (c *Config) Validate() error {
	var errs []error
	if c.Version < 1 {
		errs = append(errs, errors.New("version: must be at least 1"))
	}
	if c.Window < 1 || c.Window > 12 {
		errs = append(errs, fmt.Errorf("window_months %d: must be 1-12", c.Window))
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		errs = append(errs, fmt.Errorf("time_zone %q: %w", c.TimeZone, err))
	}
	c.location = loc
	if len(c.Tiers) == 0 {
		errs = append(errs, errors.New("tiers: at least one"))
	}
	for i, t := range c.Tiers {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("tiers[%d].name: required", i))
		}
		if i > 0 && t.MinMonthlyFen >= c.Tiers[i-1].MinMonthlyFen {
			errs = append(errs, fmt.Errorf("tiers[%d].min_monthly_fen: must be below the tier above", i))
		}
	}
	if n := len(c.Tiers); n > 0 && c.Tiers[n-1].MinMonthlyFen != 0 {
		errs = append(errs, fmt.Errorf("tiers[%d].min_monthly_fen: the lowest tier must start at 0", n-1))
	}
	return errors.Join(errs...)
}

// Names lists the tiers, highest first.
func (c Config) Names() []string {
	out := make([]string, len(c.Tiers))
	for i, t := range c.Tiers {
		out[i] = t.Name
	}
	return out
}

// Location is the zone months are cut in.
func (c Config) Location() *time.Location { return c.location }

// Month is a calendar month as a count of months since year 0 (year*12 + month-1),
// convenient for windows.
type Month int

// MonthOf returns the month of t in the configured zone.
func (c Config) MonthOf(t time.Time) Month {
	t = t.In(c.location)
	return Month(t.Year()*12 + int(t.Month()) - 1)
}

func (m Month) String() string { return fmt.Sprintf("%04d-%02d", int(m)/12, int(m)%12+1) }

// ParseMonth reads "YYYY-MM".
func ParseMonth(s string) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return 0, fmt.Errorf("month %q: want YYYY-MM", s)
	}
	return Month(t.Year()*12 + int(t.Month()) - 1), nil
}

// Spend is a customer's spend per month, in fen.
type Spend map[Month]int64

// Average is the mean monthly spend over the Window months ending with (and
// including) month now.
func (c Config) Average(s Spend, now Month) int64 {
	var total int64
	for m := now - Month(c.Window) + 1; m <= now; m++ {
		total += s[m]
	}
	return total / int64(c.Window)
}

// Tier returns the tier of a customer with this spend as of month now.
func (c Config) Tier(s Spend, now Month) string {
	avg := c.Average(s, now)
	for _, t := range c.Tiers {
		if avg >= t.MinMonthlyFen {
			return t.Name
		}
	}
	return c.Tiers[len(c.Tiers)-1].Name
}

// Rank orders tiers: 0 is the highest. Unknown names rank last.
func (c Config) Rank(name string) int {
	if i := slices.IndexFunc(c.Tiers, func(t Tier) bool { return t.Name == name }); i >= 0 {
		return i
	}
	return len(c.Tiers)
}
