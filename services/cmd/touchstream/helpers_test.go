package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/secrets"
	"github.com/touchstream/touchstream/testkit"
)

// cliEnv is a real log and database, provisioned from deploy/, for driving commands
// as an operator would: a private database, an embedded NATS with the streams
// applied, a data directory holding the phone index secret, and the environment the
// commands read their settings from.
type cliEnv struct {
	pool      *pgxpool.Pool
	nats      *testkit.NATS
	nc        *nats.Conn
	js        jetstream.JetStream
	deployDir string
	def       streams.Definition
	cat       *events.Catalog
	tiers     valuetier.Config
	loyalty   *ledger.RuleSet
	churn     *features.Scorer
	phoneKey  []byte
	env       config.Env
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	c := &cliEnv{}
	var dbURL string
	c.pool, dbURL = testkit.Pool(t)
	c.nats = testkit.StartNATS(t)
	c.nc, c.js = c.nats.JetStream(t)
	var err error
	if c.deployDir, err = filepath.Abs("../../../deploy"); err != nil {
		t.Fatal(err)
	}
	if c.def, err = streams.Load(filepath.Join(c.deployDir, "streams.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Apply(t.Context(), c.js, c.def); err != nil {
		t.Fatal(err)
	}
	if c.tiers, err = valuetier.Load(filepath.Join(c.deployDir, "tiers.json")); err != nil {
		t.Fatal(err)
	}
	if c.loyalty, err = ledger.Load(filepath.Join(c.deployDir, "loyalty.json")); err != nil {
		t.Fatal(err)
	}
	if c.churn, err = loadChurnRules(&config.Common{DeployDir: c.deployDir}); err != nil {
		t.Fatal(err)
	}
	if c.cat, err = events.DefaultCatalog(); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if c.phoneKey, _, err = secrets.LoadOrCreate(filepath.Join(dataDir, "secrets", "phone-index.key")); err != nil {
		t.Fatal(err)
	}
	c.env = config.MapEnv(map[string]string{"TOUCHSTREAM_DEPLOY_DIR": c.deployDir, "TOUCHSTREAM_NATS_URL": c.nats.URL,
		"DATABASE_URL": dbURL, "TOUCHSTREAM_DATA_DIR": dataDir, "TOUCHSTREAM_LOG_LEVEL": "warn"})
	return c
}

// run runs a touchstream command and returns what it printed.
func (c *cliEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := dispatch(t.Context(), args, c.env, &out)
	return out.String(), err
}

// publisher publishes as source.
func (c *cliEnv) publisher(t *testing.T, source string) *events.Publisher {
	t.Helper()
	pub, err := events.NewPublisher(t.Context(), c.nc, events.WithSource(source), events.WithLayout(c.def.Layout))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// projectorDeps are the projector's dependencies over this environment.
func (c *cliEnv) projectorDeps(t *testing.T) projectorDeps {
	return projectorDeps{pool: c.pool, nc: c.nc, js: c.js, layout: c.def.Layout, cat: c.cat, tiers: c.tiers, phoneKey: c.phoneKey,
		keys: events.NewKeyClient(c.nc, events.KeyClientConfig{}), log: testkit.Logger(t), loyalty: c.loyalty, churn: c.churn, serviceLevel: true}
}

// foldAll folds the log into the first versions of the timeline and customer 360,
// as the projector does, until caught up.
func (c *cliEnv) foldAll(t *testing.T) {
	t.Helper()
	r, err := buildProjector(projectorFlags{instance: "test"}, c.projectorDeps(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}
