package query

import (
	"context"
	"fmt"

	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/timeline"
)

// customer360Target is the version of the customer 360 read model that answers now.
func (s *Server) customer360Target(ctx context.Context) (string, error) {
	return s.target(ctx, customer360.Name, s.cfg.Customer360Target)
}

// timelineTarget is the version of the timeline that answers now.
func (s *Server) timelineTarget(ctx context.Context) (string, error) {
	return s.target(ctx, timeline.Name, s.cfg.TimelineTarget)
}

// churnTarget is the version of the churn read model that answers now.
func (s *Server) churnTarget(ctx context.Context) (string, error) {
	return s.target(ctx, churn.Name, s.cfg.ChurnTarget)
}

// serviceLevelTarget is the version of the service-level read model that answers now.
func (s *Server) serviceLevelTarget(ctx context.Context) (string, error) {
	return s.target(ctx, servicelevel.Name, s.cfg.ServiceLevelTarget)
}

func (s *Server) target(ctx context.Context, projection, configured string) (string, error) {
	if s.serving == nil {
		return configured, nil
	}
	t, err := s.serving.Target(ctx, projection, configured)
	if err != nil {
		return "", fmt.Errorf("serving version of %s: %w", projection, err)
	}
	return t, nil
}
