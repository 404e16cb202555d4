package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/config"
)

const churnAdminSource = "urn:touchstream:service:churn-admin"

const churnUsage = `usage:
  touchstream churn train --from 2026-03 --to 2026-08 [--valid-from 2026-09 --valid-to 2026-09]
        fit a logistic regression and gradient-boosted trees on the serving churn
        version's monthly snapshots, labelled from the terminations in the log; store
        both (named by content hash) and print their metrics
  touchstream churn evaluate --from 2026-09 --to 2026-10 [--model M ...]
        score a labelled period with the rule scorer and models (default: the rules
        and the newest model of each kind); print AUC, top-decile lift, precision and
        recall at each scorer's threshold, alerts per thousand customers
  touchstream churn activate M --effective 2026-12-01T00:00:00+08:00 [--note ...]
        make a scorer (rules:<version> or sha256:<hex>) active through the log
  touchstream churn models [--json]
        the stored models

Labels: a snapshot as of a month's end T is positive when the customer was
terminated in (T+horizon, T+horizon+window]; snapshots terminated within the horizon
or whose outcome the log does not reach yet are left out. Features never read the
label.

flags:
`

// runChurn runs `touchstream churn`.
func runChurn(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("churn", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), churnUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	from := fs.String("from", "", "train, evaluate: first snapshot month (YYYY-MM)")
	to := fs.String("to", "", "train, evaluate: last snapshot month (YYYY-MM)")
	validFrom := fs.String("valid-from", "", "train: first month of a later period to validate on")
	validTo := fs.String("valid-to", "", "train: last month of the validation period")
	horizon := fs.Duration("horizon", 7*24*time.Hour, "train, evaluate: least time between the features and the termination")
	window := fs.Duration("window", 30*24*time.Hour, "train, evaluate: the prediction window after the horizon")
	alertRate := fs.Float64("alert-rate", model.DefaultAlertRate, "train: share of the training rows a model's threshold alerts")
	kinds := fs.String("kinds", "logistic,gbt", "train: the model kinds to fit")
	var models stringList
	fs.Var(&models, "model", "evaluate: a scorer to evaluate (rules:<version> or sha256:<hex>); repeat for more")
	effective := fs.String("effective", "", "activate: when the scorer comes into force (RFC 3339)")
	note := fs.String("note", "", "activate: why, for the audit trail (no personal data)")
	retro := fs.Bool("retroactive", false, "activate: allow an effective time in the past")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: churn: train, evaluate, activate or models", errUsage)
	}
	rules, err := loadChurnRules(&c)
	if err != nil {
		return err
	}
	labels := churn.Labels{Horizon: *horizon, Window: *window}
	switch pos[0] {
	case "train", "evaluate", "models":
		tc, err := connectTool(ctx, &c, "churn", 4)
		if err != nil {
			return err
		}
		defer tc.close()
		if err := churn.MigrateModels(ctx, tc.pool); err != nil {
			return err
		}
		switch pos[0] {
		case "models":
			return listModels(ctx, tc.pool, stdout, *asJSON)
		case "train":
			period, err := parsePeriod(*from, *to)
			if err != nil {
				return err
			}
			var valid *churn.Period
			if *validFrom != "" || *validTo != "" {
				v, err := parsePeriod(*validFrom, *validTo)
				if err != nil {
					return fmt.Errorf("%w (--valid-from, --valid-to)", err)
				}
				valid = &v
			}
			rep, err := trainChurn(ctx, tc.pool, trainSpec{Period: period, Valid: valid, Labels: labels, Kinds: strings.Split(*kinds, ","),
				AlertRate: *alertRate, Rules: rules, Progress: stdout})
			if err != nil {
				return err
			}
			return rep.write(stdout, *asJSON)
		default:
			period, err := parsePeriod(*from, *to)
			if err != nil {
				return err
			}
			rep, err := evaluateChurn(ctx, tc.pool, period, labels, rules, models)
			if err != nil {
				return err
			}
			return rep.write(stdout, *asJSON)
		}
	case "activate":
		if len(pos) != 2 {
			return fmt.Errorf("%w: churn activate: name one scorer (rules:<version> or sha256:<hex>; touchstream churn models lists them)", errUsage)
		}
		at, err := time.Parse(time.RFC3339, *effective)
		if err != nil {
			return fmt.Errorf("%w: churn activate: --effective %q: an RFC 3339 time such as 2026-12-01T00:00:00+08:00 is required", errUsage, *effective)
		}
		if at.Before(time.Now()) && !*retro {
			return fmt.Errorf("%w: churn activate: --effective %s is in the past: events already scored keep their scores; add --retroactive to activate anyway, or rebuild churn --pin %s to rescore history", errUsage, *effective, pos[1])
		}
		tc, err := connectTool(ctx, &c, "churn", 2)
		if err != nil {
			return err
		}
		defer tc.close()
		if err := churn.MigrateModels(ctx, tc.pool); err != nil {
			return err
		}
		if err := checkScorer(ctx, tc.pool, rules, pos[1]); err != nil {
			return err
		}
		n, err := publishPartitionWide(ctx, tc, churnAdminSource, at, events.ChurnModelActivated{Model: pos[1], EffectiveAt: at, Note: *note})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "churn scorer %s activated from %s in all %d partitions\n", pos[1], at.Format(time.RFC3339), n)
		return nil
	}
	return fmt.Errorf("%w: churn: unknown command %q: train, evaluate, activate or models", errUsage, pos[0])
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parsePeriod(from, to string) (churn.Period, error) {
	f, err := valuetier.ParseMonth(from)
	if err != nil {
		return churn.Period{}, fmt.Errorf("%w: --from %q: a month as YYYY-MM is required", errUsage, from)
	}
	t, err := valuetier.ParseMonth(to)
	if err != nil {
		return churn.Period{}, fmt.Errorf("%w: --to %q: a month as YYYY-MM is required", errUsage, to)
	}
	p := churn.Period{From: f, To: t}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%w: %w", errUsage, err)
	}
	return p, nil
}

// checkScorer refuses to activate a scorer the projector could not load.
func checkScorer(ctx context.Context, pool *pgxpool.Pool, rules *features.Scorer, name string) error {
	if strings.HasPrefix(name, "rules:") {
		if name != churn.RulesName(rules.Version()) {
			return fmt.Errorf("%w: churn activate: %s: deploy/churn-rules.json holds %s", errUsage, name, churn.RulesName(rules.Version()))
		}
		return nil
	}
	if _, err := churn.LoadModel(ctx, pool, name); err != nil {
		return fmt.Errorf("%w: churn activate: %w", errUsage, err)
	}
	return nil
}

// servingChurn is the churn version readers are served from.
func servingChurn(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	serving, err := projections.EnsureServing(ctx, pool, defaultServing())
	if err != nil {
		return "", err
	}
	return serving[churn.Name], nil
}

// trainSpec is what `churn train` fits.
type trainSpec struct {
	Period    churn.Period
	Valid     *churn.Period
	Labels    churn.Labels
	Kinds     []string
	AlertRate float64
	Rules     *features.Scorer
	Progress  io.Writer
}

// churnReport is what train and evaluate print.
type churnReport struct {
	Target  string               `json:"target"`
	Period  string               `json:"period"`
	Valid   string               `json:"validation_period,omitempty"`
	Rows    int                  `json:"rows"`
	Left    map[string]int       `json:"left_out"`
	Models  []string             `json:"models,omitempty"`
	Metrics []model.NamedMetrics `json:"metrics"`
	Took    map[string]string    `json:"took,omitempty"`
}

func (r *churnReport) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "version %s, snapshots %s: %d labelled rows (left out: %d too close to their termination, %d outcome unknown)\n",
		r.Target, r.Period, r.Rows, r.Left["too_close"], r.Left["unknown"])
	if err := model.WriteTable(w, r.Metrics); err != nil {
		return err
	}
	for _, m := range r.Models {
		fmt.Fprintf(w, "stored %s\n", m)
	}
	for k, v := range r.Took {
		fmt.Fprintf(w, "%s took %s\n", k, v)
	}
	return nil
}

func trainChurn(ctx context.Context, pool *pgxpool.Pool, s trainSpec) (*churnReport, error) {
	target, err := servingChurn(ctx, pool)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	ex, err := churn.LoadExamples(ctx, pool, target, s.Period, s.Labels)
	if err != nil {
		return nil, err
	}
	rep := &churnReport{Target: target, Period: s.Period.String(), Rows: ex.Rows(), Took: map[string]string{"loading examples": time.Since(t0).Round(time.Millisecond).String()},
		Left: map[string]int{"too_close": ex.TooClose, "unknown": ex.Unknown}}
	if err := ex.Validate(); err != nil {
		return nil, fmt.Errorf("churn train: %s of %s: %w (train on months whose outcome the log reaches, with terminations in them)", s.Period, target, err)
	}
	var valid *churn.Examples
	if s.Valid != nil {
		if valid, err = churn.LoadExamples(ctx, pool, target, *s.Valid, s.Labels); err != nil {
			return nil, err
		}
		rep.Valid = s.Valid.String()
	}
	spec := map[string]any{"target": target, "period": s.Period.String(), "horizon": s.Labels.Horizon.String(), "window": s.Labels.Window.String()}
	rep.Metrics = append(rep.Metrics, model.NamedMetrics{Name: "rules (train)", Metrics: churn.Evaluate(ex, churn.Rules(s.Rules))})
	if valid != nil {
		rep.Metrics = append(rep.Metrics, model.NamedMetrics{Name: "rules (valid)", Metrics: churn.Evaluate(valid, churn.Rules(s.Rules))})
	}
	for _, kind := range s.Kinds {
		t := time.Now()
		var m *model.Model
		switch strings.TrimSpace(kind) {
		case string(model.KindLogistic):
			m, err = model.TrainLogistic(ex.Dataset, model.LogisticOptions{AlertRate: s.AlertRate})
		case string(model.KindGBT):
			m, err = model.TrainGBT(ex.Dataset, model.GBTOptions{AlertRate: s.AlertRate})
		default:
			return nil, fmt.Errorf("%w: --kinds: %q: logistic or gbt", errUsage, kind)
		}
		if err != nil {
			return nil, fmt.Errorf("churn train %s: %w", kind, err)
		}
		rep.Took["training "+kind] = time.Since(t).Round(time.Millisecond).String()
		if _, err := churn.SaveModel(ctx, pool, m, spec); err != nil {
			return nil, err
		}
		sc, err := churn.Trained(m)
		if err != nil {
			return nil, err
		}
		rep.Models = append(rep.Models, m.Version+" ("+kind+")")
		rep.Metrics = append(rep.Metrics, model.NamedMetrics{Name: kind + " (train)", Metrics: m.Training.Train})
		if valid != nil {
			rep.Metrics = append(rep.Metrics, model.NamedMetrics{Name: kind + " (valid)", Metrics: churn.Evaluate(valid, sc)})
		}
	}
	return rep, nil
}

func evaluateChurn(ctx context.Context, pool *pgxpool.Pool, period churn.Period, labels churn.Labels, rules *features.Scorer, names []string) (*churnReport, error) {
	target, err := servingChurn(ctx, pool)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		names = append(names, churn.RulesName(rules.Version()))
		stored, err := churn.Models(ctx, pool)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, m := range stored {
			if !seen[m.Kind] {
				seen[m.Kind] = true
				names = append(names, m.Version)
			}
		}
	}
	ex, err := churn.LoadExamples(ctx, pool, target, period, labels)
	if err != nil {
		return nil, err
	}
	rep := &churnReport{Target: target, Period: period.String(), Rows: ex.Rows(), Left: map[string]int{"too_close": ex.TooClose, "unknown": ex.Unknown}}
	for _, name := range names {
		var sc churn.Scorer
		label := name
		if strings.HasPrefix(name, "rules:") {
			if name != churn.RulesName(rules.Version()) {
				return nil, fmt.Errorf("%w: --model %s: deploy/churn-rules.json holds %s", errUsage, name, churn.RulesName(rules.Version()))
			}
			sc = churn.Rules(rules)
		} else {
			m, err := churn.LoadModel(ctx, pool, name)
			if err != nil {
				return nil, fmt.Errorf("%w: --model: %w", errUsage, err)
			}
			if sc, err = churn.Trained(m); err != nil {
				return nil, err
			}
			label = string(m.Kind) + " " + name[:min(len(name), 19)]
		}
		rep.Metrics = append(rep.Metrics, model.NamedMetrics{Name: label, Metrics: churn.Evaluate(ex, sc)})
	}
	return rep, nil
}

func listModels(ctx context.Context, pool *pgxpool.Pool, stdout io.Writer, asJSON bool) error {
	ms, err := churn.Models(ctx, pool)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tKIND\tROWS\tPOSITIVES\tTHRESHOLD\tCREATED")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.4f\t%s\n", m.Version, m.Kind, m.Rows, m.Positives, m.Threshold, m.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}
