package query

import (
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ChurnDistributionResponse is the body of GET /v1/churn/distribution: how the
// customers of the churn read model spread over the state groups and the score
// deciles, for managers (counts only, no customer).
type ChurnDistributionResponse struct {
	Tier   string `json:"tier,omitempty"`
	Region string `json:"region,omitempty"`
	// Groups counts the customers per state group: stable, warning, churned.
	Groups map[string]int64 `json:"groups"`
	// Buckets count the scored customers not churned per score decile, [from, to)
	// (the last one includes 1).
	Buckets   []ScoreBucket `json:"buckets"`
	Unscored  int64         `json:"unscored"`
	Freshness *Freshness    `json:"freshness"`
}

// ScoreBucket is one decile of the score distribution.
type ScoreBucket struct {
	From      float64 `json:"from"`
	To        float64 `json:"to"`
	Customers int64   `json:"customers"`
}

// getChurnDistribution counts the customers per state group and score decile. It
// reads the churn read model's customers table in one aggregate query: a view the
// churn package does not provide (it serves customers, not counts).
func (s *Server) getChurnDistribution(c *call) (*reply, error) {
	p, err := parseParams(c, "tier", "region")
	if err != nil {
		return nil, err
	}
	tier, region := p["tier"], p["region"]
	if tier != "" && (!token.MatchString(tier) || (s.tiers != nil && !s.tiers[tier])) {
		return nil, badParam("tier", "unknown value tier")
	}
	if region != "" && !token.MatchString(region) {
		return nil, badParam("region", "must match "+token.String())
	}
	target, err := s.churnTarget(c.ctx)
	if err != nil {
		return nil, err
	}
	fresh, err := s.summaryFreshness(c.ctx, target)
	if err != nil {
		return nil, err
	}
	body := ChurnDistributionResponse{Tier: tier, Region: region, Freshness: fresh,
		Groups: map[string]int64{"stable": 0, "warning": 0, "churned": 0}, Buckets: make([]ScoreBucket, 10)}
	for i := range body.Buckets {
		body.Buckets[i] = ScoreBucket{From: float64(i) / 10, To: float64(i+1) / 10}
	}
	rows, err := s.db.Query(c.ctx, `SELECT CASE WHEN terminated_at IS NOT NULL THEN 'churned' WHEN alert_id IS NOT NULL THEN 'warning' ELSE 'stable' END,
			CASE WHEN score IS NULL THEN -1 ELSE least(floor(score * 10)::int, 9) END, count(*)
		FROM `+pgx.Identifier{target, "customers"}.Sanitize()+`
		WHERE ($1 = '' OR tier = $1) AND ($2 = '' OR region = $2)
		GROUP BY 1, 2`, tier, region)
	if err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	var group string
	var bucket int
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&group, &bucket, &n}, func() error {
		body.Groups[group] += n
		switch {
		case group == "churned":
		case bucket < 0:
			body.Unscored += n
		case bucket < len(body.Buckets):
			body.Buckets[bucket].Customers += n
		default:
			return fmt.Errorf("score bucket %d", bucket)
		}
		return nil
	}); err != nil {
		return nil, readModelMissing(err, target, fresh)
	}
	return &reply{body: body, fresh: fresh}, nil
}
