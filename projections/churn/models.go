package churn

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/migrate"
)

// ModelSchema is the PostgreSQL schema of the model store.
const ModelSchema = "churn_models"

//go:embed storemigrations/*.sql
var storeMigrations embed.FS

// ErrNoModel: the model store has no model of that version.
var ErrNoModel = errors.New("churn model not in the model store")

// MigrateModels creates the model store.
func MigrateModels(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "churn_models", ModelSchema, storeMigrations, "storemigrations")
}

// StoredModel is a model in the store and what it was trained on.
type StoredModel struct {
	Version   string          `json:"version"`
	Kind      string          `json:"kind"`
	Threshold float64         `json:"threshold"`
	Rows      int             `json:"rows"`
	Positives int             `json:"positives"`
	Metrics   json.RawMessage `json:"metrics"`
	Spec      json.RawMessage `json:"spec"`
	CreatedAt time.Time       `json:"created_at"`
}

// SaveModel stores a trained model under its content hash (idempotent: the same
// model saved twice is one row) and returns its version.
func SaveModel(ctx context.Context, pool *pgxpool.Pool, m *model.Model, spec any) (string, error) {
	doc, err := m.Encode()
	if err != nil {
		return "", err
	}
	metrics, err := json.Marshal(struct {
		Train      model.Metrics  `json:"train"`
		Validation *model.Metrics `json:"validation,omitempty"`
	}{m.Training.Train, m.Training.Validation})
	if err != nil {
		return "", fmt.Errorf("churn: save model: %w", err)
	}
	sp, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("churn: save model: spec: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+ModelSchema+`.models (version, kind, threshold, rows, positives, metrics, spec, doc)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (version) DO NOTHING`,
		m.Version, string(m.Kind), m.Threshold, m.Training.Rows, m.Training.Positives, metrics, sp, doc); err != nil {
		return "", fmt.Errorf("churn: save model %s: %w", m.Version, err)
	}
	return m.Version, nil
}

// LoadModel reads a model from the store and checks its content against its name.
func LoadModel(ctx context.Context, q projections.Querier, version string) (*model.Model, error) {
	var doc []byte
	err := q.QueryRow(ctx, `SELECT doc FROM `+ModelSchema+`.models WHERE version = $1`, version).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &errUnknownScorer{version, ErrNoModel.Error() + " (" + ModelSchema + ".models): train it or restore the store"}
	}
	if err != nil {
		return nil, fmt.Errorf("churn: load model %s: %w", version, err)
	}
	m, err := model.Decode(doc)
	if err != nil {
		return nil, &errUnknownScorer{version, err.Error()}
	}
	if m.Version != version {
		return nil, &errUnknownScorer{version, "stored content hashes to " + m.Version}
	}
	return m, nil
}

// Models lists the stored models, newest first.
func Models(ctx context.Context, q projections.Querier) ([]StoredModel, error) {
	rows, err := q.Query(ctx, `SELECT version, kind, threshold, rows, positives, metrics, spec, created_at FROM `+ModelSchema+`.models ORDER BY created_at DESC, version`)
	if err != nil {
		return nil, fmt.Errorf("churn: list models: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredModel, error) {
		var m StoredModel
		err := r.Scan(&m.Version, &m.Kind, &m.Threshold, &m.Rows, &m.Positives, &m.Metrics, &m.Spec, &m.CreatedAt)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("churn: list models: %w", err)
	}
	return out, nil
}

// trained adapts a trained model to a Scorer: reasons are the features that pushed the
// score up, largest first, each with the events behind it; the bias carries the rest
// (the features that pulled it down are summed into it, so bias plus the reasons'
// contributions is the logit).
type trained struct{ m *model.Model }

// Trained returns the Scorer of a trained model.
func Trained(m *model.Model) (Scorer, error) {
	if _, err := m.Align(features.Names()); err != nil {
		return nil, err
	}
	return trained{m}, nil
}

func (t trained) Version() string    { return t.m.Version }
func (t trained) Threshold() float64 { return t.m.Threshold }

func (t trained) Score(v features.Vector) features.Score {
	x := make([]float64, len(t.m.Features))
	for i, name := range t.m.Features {
		val, ok := v.Value(name)
		if !ok {
			val = -1
		}
		x[i] = val
	}
	pr := t.m.Predict(x)
	s := features.Score{Version: t.m.Version, Probability: pr.Probability, Logit: pr.Logit, Bias: pr.Bias, Reasons: []features.Reason{}}
	for i, c := range pr.Contributions {
		if c <= 0 {
			s.Bias += c
			continue
		}
		r := features.Reason{Feature: t.m.Features[i], Value: x[i], Contribution: c}
		if f := v.Feature(t.m.Features[i]); f != nil {
			r.Events = append([]events.EventRef(nil), f.Events...)
		}
		s.Reasons = append(s.Reasons, r)
	}
	features.SortReasons(s.Reasons)
	s.Alert = t.m.Alert(s.Probability)
	return s
}
