package deploy

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// composeEnv is the environment `docker compose` would be given: placeholders for
// every secret the file requires, and for every NATS identity of the accounts a user
// nkey, its public key as NKEY_<IDENTITY> and its seed as
// TOUCHSTREAM_NATS_SEED_<IDENTITY>.
func composeEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{
		"POSTGRES_PASSWORD":                         "test-pg",
		"NATS_SYSTEM_PASSWORD":                      "test-sys",
		"TOUCHSTREAM_MASTER_KEY":                    "dGVzdA==",
		"TOUCHSTREAM_PHONE_INDEX_KEY":               "dGVzdA==",
		"TOUCHSTREAM_WEBHOOK_RETENTION_DESK_SECRET": "test-secret-0123456789",
		"TOUCHSTREAM_WEBHOOK_SLA_MONITOR_SECRET":    "test-secret-0123456789",
	}
	for _, v := range accountVariables(string(readFile(t, "compose/accounts.conf"))) {
		id, ok := strings.CutPrefix(v, "NKEY_")
		if !ok {
			continue
		}
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		env[v], env["TOUCHSTREAM_NATS_SEED_"+id] = pub, string(seed)
	}
	return env
}

func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	p, err := loadComposeErr(t, env)
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return p
}

func loadComposeErr(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: "compose.yaml"}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("touchstream", true) })
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	want := []string{"clock", "gateway", "keys", "nats-1", "nats-2", "nats-3", "notify", "postgres", "projector", "query", "redeem", "streams-apply"}
	if diff := cmp.Diff(want, slices.Sorted(maps.Keys(p.Services))); diff != "" {
		t.Fatalf("services (-want +got):\n%s", diff)
	}
	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			hc := s.HealthCheck
			if name == "streams-apply" {
				if hc == nil || !hc.Disable {
					t.Errorf("the one-shot: want its healthcheck disabled")
				}
				if s.Restart != "no" {
					t.Errorf("restart %q: want no", s.Restart)
				}
				return
			}
			if hc == nil || hc.Disable || len(hc.Test) < 2 {
				t.Fatalf("no healthcheck")
			}
			test := strings.Join(hc.Test, " ")
			switch {
			case strings.HasPrefix(name, "nats-"):
				if !strings.Contains(test, ":8222/healthz") {
					t.Errorf("healthcheck %q: want the monitoring port's /healthz", test)
				}
				if !slices.Contains(s.Command, "/etc/nats/n"+strings.TrimPrefix(name, "nats-")+".conf") {
					t.Errorf("command %q: want its own node configuration", s.Command)
				}
			case name == "postgres":
				if !strings.Contains(test, "pg_isready") {
					t.Errorf("healthcheck %q: want pg_isready", test)
				}
			default:
				if !strings.Contains(test, "http://127.0.0.1:9090/readyz") {
					t.Errorf("healthcheck %q: want the admin listener's /readyz", test)
				}
				if s.Build == nil || s.Build.Dockerfile != "Dockerfile" {
					t.Errorf("build: want the repository's Dockerfile")
				}
				if !s.ReadOnly {
					t.Errorf("read_only: want a read-only root filesystem")
				}
				if len(s.Command) == 0 || !slices.Contains(subcommands, s.Command[0]) {
					t.Errorf("command %q: want a touchstream subcommand", s.Command)
				}
				if v := s.Environment["TOUCHSTREAM_ADMIN_ADDR"]; v == nil || *v != "0.0.0.0:9090" {
					t.Errorf("TOUCHSTREAM_ADMIN_ADDR: want 0.0.0.0:9090")
				}
				if v := s.Environment["TOUCHSTREAM_NATS_URL"]; v == nil || strings.Count(*v, "nats://") != 3 {
					t.Errorf("TOUCHSTREAM_NATS_URL: want the three nodes")
				} else if err := natsURLWithoutCredentials(*v); err != nil {
					t.Errorf("TOUCHSTREAM_NATS_URL: %v", err)
				}
			}
		})
	}
}

func TestComposeDependencies(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	dep := func(svc, on string) string {
		d, ok := p.Services[svc].DependsOn[on]
		if !ok {
			return ""
		}
		return d.Condition
	}
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		if got := dep("streams-apply", n); got != types.ServiceConditionHealthy {
			t.Errorf("streams-apply on %s: %q, want %q", n, got, types.ServiceConditionHealthy)
		}
	}
	for _, s := range []string{"keys", "gateway", "projector", "redeem", "clock", "notify"} {
		if got := dep(s, "streams-apply"); got != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s on streams-apply: %q, want %q", s, got, types.ServiceConditionCompletedSuccessfully)
		}
	}
	for _, s := range []string{"keys", "gateway", "projector", "query", "redeem", "notify"} {
		if got := dep(s, "postgres"); got != types.ServiceConditionHealthy {
			t.Errorf("%s on postgres: %q, want %q", s, got, types.ServiceConditionHealthy)
		}
	}
	for _, s := range []string{"gateway", "projector", "query"} {
		if got := dep(s, "keys"); got != types.ServiceConditionHealthy {
			t.Errorf("%s on keys: %q, want %q (data keys over NATS)", s, got, types.ServiceConditionHealthy)
		}
	}
}

// natsURLWithoutCredentials checks a comma separated list of NATS URLs: the
// identity is the seed's, never a user and password in the URL.
func natsURLWithoutCredentials(list string) error {
	for _, raw := range strings.Split(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return err
		}
		if u.Scheme != "nats" && u.Scheme != "tls" || u.Host == "" {
			return fmt.Errorf("%q: want nats://host:port or tls://host:port", u.Redacted())
		}
		if u.User != nil {
			return fmt.Errorf("%q carries credentials: connect with the identity's seed (TOUCHSTREAM_NATS_CREDS)", u.Redacted())
		}
	}
	return nil
}

// touchstreamServices are the compose services that run the touchstream image.
func touchstreamServices(p *types.Project) map[string]types.ServiceConfig {
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "touchstream") {
			out[name] = s
		}
	}
	return out
}

// TestComposeSecrets checks that every secret comes from the environment of docker
// compose and reaches only the services that need it, as a file readable by the
// service's user only, named by the setting that reads it: the master key, the phone
// index key and each service's own NATS seed.
func TestComposeSecrets(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	for name, s := range p.Secrets {
		if s.Environment == "" || s.File != "" {
			t.Errorf("secret %s: want it from the environment of docker compose, never a file", name)
		}
		if s.Content == "" {
			t.Errorf("secret %s: %s is not among the variables the header asks for (composeEnv)", name, s.Environment)
		}
	}
	keyFiles := map[string]map[string]string{ // service: secret -> setting
		"keys":      {"master_key": "TOUCHSTREAM_MASTER_KEY_FILE"},
		"projector": {"phone_index_key": "TOUCHSTREAM_PHONE_INDEX_KEY_FILE"},
		"query":     {"phone_index_key": "TOUCHSTREAM_PHONE_INDEX_KEY_FILE"},
	}
	for name, s := range touchstreamServices(p) {
		t.Run(name, func(t *testing.T) {
			want := map[string]string{"nats_seed_" + serviceIdentity(s.Command): "TOUCHSTREAM_NATS_CREDS"}
			for k, v := range keyFiles[name] {
				want[k] = v
			}
			got := map[string]string{}
			for _, sec := range s.Secrets {
				if sec.Mode == nil || *sec.Mode != 0o400 || sec.UID != "65532" {
					t.Errorf("secret %s: want mode 0400 owned by 65532 (key files readable by their owner only)", sec.Source)
				}
				got[sec.Source] = ""
				for env, v := range s.Environment {
					if v != nil && *v == "/run/secrets/"+sec.Source {
						got[sec.Source] = env
					}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("secrets and the settings naming their files (-want +got):\n%s", diff)
			}
		})
	}
	// A missing secret stops the load instead of starting with an empty password or
	// without a public key.
	// (A secret's variable is checked by docker compose up, not by the loader.)
	for _, name := range []string{"POSTGRES_PASSWORD", "NATS_SYSTEM_PASSWORD", "NKEY_GATEWAY", "NKEY_CHANNEL_STORE"} {
		env := composeEnv(t)
		delete(env, name)
		if _, err := loadComposeErr(t, env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("load without %s: %v, want an error naming it", name, err)
		}
	}
}

// TestComposeNATSIdentities checks the NATS identities end to end: the nodes run
// compose/accounts.conf with every variable it references and nothing stale; every
// touchstream service holds the seed of the identity it runs as, one the table knows,
// whose public key is the one the nodes are given for that identity.
func TestComposeNATSIdentities(t *testing.T) {
	env := composeEnv(t)
	p := loadCompose(t, env)
	accounts := string(readFile(t, "compose/accounts.conf"))
	vars := accountVariables(accounts)
	users := accountUsers(t, accounts)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		s := p.Services[n]
		mounted := ""
		for _, v := range s.Volumes {
			if v.Target == "/etc/nats/accounts.conf" {
				mounted, _ = filepath.Rel(wd, v.Source)
			}
		}
		if mounted != "compose/accounts.conf" {
			t.Errorf("%s: /etc/nats/accounts.conf is %q, want compose/accounts.conf (the production layout's permissions)", n, mounted)
		}
		for _, v := range vars {
			if got := s.Environment[v]; got == nil || *got != env[v] {
				t.Errorf("%s: %s not passed from the compose environment", n, v)
			}
		}
		for k := range s.Environment {
			if !slices.Contains(vars, k) {
				t.Errorf("%s: %s is not referenced by the accounts", n, k)
			}
		}
	}
	nodeEnv := p.Services["nats-1"].Environment
	for name, s := range touchstreamServices(p) {
		t.Run(name, func(t *testing.T) {
			id := serviceIdentity(s.Command)
			u, ok := serviceUser(users, id)
			if !ok {
				t.Fatalf("command %q connects as %q: not a service identity of the accounts", s.Command, id)
			}
			creds := s.Environment["TOUCHSTREAM_NATS_CREDS"]
			if creds == nil {
				t.Fatalf("no TOUCHSTREAM_NATS_CREDS")
			}
			source, ok := strings.CutPrefix(*creds, "/run/secrets/")
			if !ok || !slices.ContainsFunc(s.Secrets, func(c types.ServiceSecretConfig) bool { return c.Source == source }) {
				t.Fatalf("TOUCHSTREAM_NATS_CREDS %s: not one of its secrets", *creds)
			}
			kp, err := nkeys.FromSeed([]byte(p.Secrets[source].Content))
			if err != nil {
				t.Fatalf("secret %s (%s): not an nkey seed: %v", source, p.Secrets[source].Environment, err)
			}
			pub, err := kp.PublicKey()
			if err != nil || !nkeys.IsValidPublicUserKey(pub) {
				t.Fatalf("secret %s: not a user seed", source)
			}
			if nk := nodeEnv[u.Variable()]; nk == nil || *nk != pub {
				t.Errorf("secret %s: its public key is not the nodes' %s (identity %s)", source, u.Variable(), id)
			}
		})
	}
}

// tokenSource says why the query API would refuse to start with env, if it would:
// it needs a static token file that exists, or an identity provider with its issuer,
// audience and keys.
func tokenSource(env map[string]string, exists func(path string) bool) error {
	if f := env["TOUCHSTREAM_ACCESS_FILE"]; f != "" {
		if !exists(f) {
			return fmt.Errorf("TOUCHSTREAM_ACCESS_FILE %s: no such file in the container", f)
		}
		return nil
	}
	iss, aud := env["TOUCHSTREAM_OIDC_ISSUER"], env["TOUCHSTREAM_OIDC_AUDIENCE"]
	jwks, jwksFile := env["TOUCHSTREAM_OIDC_JWKS_URL"], env["TOUCHSTREAM_OIDC_JWKS_FILE"]
	switch {
	case iss == "" && aud == "" && jwks == "" && jwksFile == "":
		return errors.New("no token source: TOUCHSTREAM_ACCESS_FILE or TOUCHSTREAM_OIDC_ISSUER, _AUDIENCE and _JWKS_URL")
	case iss == "" || aud == "" || (jwks == "" && jwksFile == ""):
		return errors.New("OIDC: want TOUCHSTREAM_OIDC_ISSUER, TOUCHSTREAM_OIDC_AUDIENCE and TOUCHSTREAM_OIDC_JWKS_URL (or _FILE)")
	case jwks != "" && !strings.HasPrefix(jwks, "https://"):
		return fmt.Errorf("TOUCHSTREAM_OIDC_JWKS_URL %q: want https", jwks)
	case jwksFile != "" && !exists(jwksFile):
		return fmt.Errorf("TOUCHSTREAM_OIDC_JWKS_FILE %s: no such file in the container", jwksFile)
	}
	return nil
}

// TestComposeQueryTokens checks that the query service has a token source: the
// image's deploy/*.json are under /etc/touchstream, mounted files where mounted.
func TestComposeQueryTokens(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	s := p.Services["query"]
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	exists := func(path string) bool {
		for _, v := range s.Volumes {
			if v.Target == path {
				_, err := os.Stat(v.Source)
				return err == nil
			}
		}
		dir, file := filepath.Split(path)
		if filepath.Clean(dir) != "/etc/touchstream" {
			return false
		}
		_, err := os.Stat(file) // COPY deploy/*.json /etc/touchstream/
		return err == nil && strings.HasSuffix(file, ".json")
	}
	if err := tokenSource(env, exists); err != nil {
		t.Errorf("query: %v", err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"none", map[string]string{}},
		{"missing file", map[string]string{"TOUCHSTREAM_ACCESS_FILE": "/etc/touchstream/nope.json"}},
		{"issuer only", map[string]string{"TOUCHSTREAM_OIDC_ISSUER": "https://idp"}},
		{"plain jwks", map[string]string{"TOUCHSTREAM_OIDC_ISSUER": "https://idp", "TOUCHSTREAM_OIDC_AUDIENCE": "a", "TOUCHSTREAM_OIDC_JWKS_URL": "http://idp/jwks"}},
	} {
		if err := tokenSource(tt.env, exists); err == nil {
			t.Errorf("tokenSource(%s): nil, want a refusal", tt.name)
		}
	}
}

func natsEnv(t *testing.T) {
	t.Setenv("NATS_SYSTEM_PASSWORD", "test-sys")
	nkeyEnv(t)
}

// nodeConfigs are the node configurations as the cluster runs them: nats/n*.conf
// with nats/accounts.conf, and with compose/accounts.conf in its place (compose).
func nodeConfigs(t *testing.T, node string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range map[string]string{"nats/" + node + ".conf": node + ".conf", "compose/accounts.conf": "accounts.conf"} {
		if err := os.WriteFile(filepath.Join(dir, dst), readFile(t, src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]string{"nats/accounts.conf": "nats/" + node + ".conf", "compose/accounts.conf": filepath.Join(dir, node+".conf")}
}

// TestNATSNodeConfigs parses every node's configuration with the server's parser, with
// either accounts file: one cluster, JetStream on a file store, placement by zone.
func TestNATSNodeConfigs(t *testing.T) {
	natsEnv(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		for accounts, path := range nodeConfigs(t, n) {
			t.Run(n+" with "+accounts, func(t *testing.T) { checkNodeConfig(t, n, path) })
		}
	}
}

func checkNodeConfig(t *testing.T, n, path string) {
	t.Helper()
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerName != n {
		t.Errorf("server_name %q, want %q", o.ServerName, n)
	}
	if !o.JetStream || o.StoreDir != "/data/jetstream" || o.JetStreamMaxStore < 100<<30 {
		t.Errorf("jetstream: enabled %v, store %q, max file %d; want a file store of at least 100 GiB under /data/jetstream",
			o.JetStream, o.StoreDir, o.JetStreamMaxStore)
	}
	if o.JetStreamUniqueTag != "az:" || !slices.ContainsFunc(o.Tags, func(s string) bool { return strings.HasPrefix(s, "az:") }) {
		t.Errorf("placement: unique tag %q, tags %v; want az: on both", o.JetStreamUniqueTag, o.Tags)
	}
	if o.Cluster.Name != "touchstream" || o.Cluster.Port != 6222 || len(o.Routes) != 3 {
		t.Errorf("cluster %q port %d with %d routes, want touchstream on 6222 with 3", o.Cluster.Name, o.Cluster.Port, len(o.Routes))
	}
	if o.HTTPPort != 8222 {
		t.Errorf("monitoring port %d, want 8222 (healthchecks)", o.HTTPPort)
	}
	if o.SystemAccount != "SYS" {
		t.Errorf("system account %q, want SYS", o.SystemAccount)
	}
	users := map[string]string{}
	for _, u := range o.Users {
		users[u.Username] = u.Account.Name
		if u.Password == "" || strings.HasPrefix(u.Password, "$") {
			t.Errorf("user %s: password not taken from the environment", u.Username)
		}
	}
	if diff := cmp.Diff(map[string]string{"sys": "SYS"}, users); diff != "" {
		t.Errorf("password users by account (-want +got):\n%s", diff)
	}
	if len(o.Nkeys) == 0 {
		t.Errorf("no nkey users: the identities of the accounts are missing")
	}
}

// TestNATSConfigNeedsSecrets checks that a node refuses to start without the system
// password or any public nkey the accounts reference, rather than admitting no one
// or anyone.
func TestNATSConfigNeedsSecrets(t *testing.T) {
	vars := accountVariables(string(readFile(t, "compose/accounts.conf")))
	for accounts, path := range nodeConfigs(t, "n1") {
		for _, missing := range vars {
			t.Run(accounts+" without "+missing, func(t *testing.T) {
				natsEnv(t)
				t.Setenv(missing, "")
				os.Unsetenv(missing)
				if _, err := server.ProcessConfigFile(path); err == nil || !strings.Contains(err.Error(), missing) {
					t.Errorf("start without %s: %v, want a missing variable naming it", missing, err)
				}
			})
		}
	}
}

// TestDockerfile checks the container build against the workspace: every module's
// go.mod is copied for the dependency layer, and the runtime is non-root with the
// configuration under /etc/touchstream.
func TestDockerfile(t *testing.T) {
	df := string(readFile(t, "../Dockerfile"))
	work := string(readFile(t, "../go.work"))
	for _, line := range strings.Split(work, "\n") {
		m := strings.TrimSpace(line)
		if !strings.HasPrefix(m, "./") {
			continue
		}
		mod := strings.TrimPrefix(m, "./")
		if !strings.Contains(df, "COPY "+mod+"/go.mod") {
			t.Errorf("Dockerfile: no COPY of %s/go.mod (go.work uses ./%s)", mod, mod)
		}
	}
	for _, want := range []string{
		"go build", "./services/cmd/touchstream", "USER 65532:65532",
		"COPY deploy/*.json /etc/touchstream/", "TOUCHSTREAM_DEPLOY_DIR=/etc/touchstream",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
}
