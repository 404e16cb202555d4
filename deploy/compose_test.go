package deploy

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

// composeEnv is the environment `docker compose` would be given: placeholders for
// every secret the file requires.
func composeEnv() map[string]string {
	return map[string]string{
		"POSTGRES_PASSWORD":                         "test-pg",
		"TOUCHSTREAM_NATS_PASSWORD":                 "test-nats",
		"NATS_SYSTEM_PASSWORD":                      "test-sys",
		"TOUCHSTREAM_MASTER_KEY":                    "dGVzdA==",
		"TOUCHSTREAM_PHONE_INDEX_KEY":               "dGVzdA==",
		"TOUCHSTREAM_WEBHOOK_RETENTION_DESK_SECRET": "test-secret-0123456789",
		"TOUCHSTREAM_WEBHOOK_SLA_MONITOR_SECRET":    "test-secret-0123456789",
	}
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
	p := loadCompose(t, composeEnv())
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
				}
			}
		})
	}
}

func TestComposeDependencies(t *testing.T) {
	p := loadCompose(t, composeEnv())
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

func TestComposeSecrets(t *testing.T) {
	p := loadCompose(t, composeEnv())
	for name, s := range p.Secrets {
		if s.Environment == "" || s.File != "" {
			t.Errorf("secret %s: want it from the environment of docker compose, never a file", name)
		}
	}
	files := map[string]string{
		"keys":      "TOUCHSTREAM_MASTER_KEY_FILE",
		"projector": "TOUCHSTREAM_PHONE_INDEX_KEY_FILE",
		"query":     "TOUCHSTREAM_PHONE_INDEX_KEY_FILE",
	}
	for svc, env := range files {
		s := p.Services[svc]
		if len(s.Secrets) != 1 {
			t.Errorf("%s: secrets %v, want one", svc, s.Secrets)
			continue
		}
		sec := s.Secrets[0]
		if sec.Mode == nil || *sec.Mode != 0o400 || sec.UID != "65532" {
			t.Errorf("%s secret %s: want mode 0400 owned by 65532 (key files readable by their owner only)", svc, sec.Source)
		}
		if v := s.Environment[env]; v == nil || *v != "/run/secrets/"+sec.Source {
			t.Errorf("%s %s: want /run/secrets/%s", svc, env, sec.Source)
		}
	}
	// A missing secret stops the load instead of starting with an empty password.
	env := composeEnv()
	delete(env, "TOUCHSTREAM_NATS_PASSWORD")
	if _, err := loadComposeErr(t, env); err == nil || !strings.Contains(err.Error(), "TOUCHSTREAM_NATS_PASSWORD") {
		t.Errorf("load without TOUCHSTREAM_NATS_PASSWORD: %v, want an error naming it", err)
	}
}

func natsEnv(t *testing.T) {
	t.Setenv("TOUCHSTREAM_NATS_PASSWORD", "test-nats")
	t.Setenv("NATS_SYSTEM_PASSWORD", "test-sys")
	nkeyEnv(t)
}

func TestNATSNodeConfigs(t *testing.T) {
	natsEnv(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		t.Run(n, func(t *testing.T) {
			o, err := server.ProcessConfigFile("nats/" + n + ".conf")
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
				t.Errorf("users by account (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNATSConfigNeedsPasswords(t *testing.T) {
	t.Setenv("TOUCHSTREAM_NATS_PASSWORD", "test-nats")
	// NATS_SYSTEM_PASSWORD unset: the server must refuse to start.
	os.Unsetenv("NATS_SYSTEM_PASSWORD")
	if _, err := server.ProcessConfigFile("nats/n1.conf"); err == nil {
		t.Errorf("n1.conf without NATS_SYSTEM_PASSWORD: no error, want a missing variable")
	}
}

// TestNATSHelmValues checks the values for the official chart against the node
// configurations: three nodes, JetStream on a persistent file store, the same image.
func TestNATSHelmValues(t *testing.T) {
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled   bool `json:"enabled"`
				FileStore struct {
					Enabled bool `json:"enabled"`
					PVC     struct {
						Enabled bool   `json:"enabled"`
						Size    string `json:"size"`
					} `json:"pvc"`
				} `json:"fileStore"`
			} `json:"jetstream"`
			Merge map[string]any `json:"merge"`
		} `json:"config"`
		Container struct {
			Image struct {
				Repository string `json:"repository"`
				Tag        string `json:"tag"`
			} `json:"image"`
			Env map[string]any `json:"env"`
		} `json:"container"`
	}
	if err := yaml.Unmarshal(readFile(t, "k8s/nats-values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster: enabled %v, replicas %d; want 3", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled || c.JetStream.FileStore.PVC.Size == "" {
		t.Errorf("jetstream: want a file store on a persistent volume")
	}
	if _, ok := c.Merge["accounts"]; !ok || c.Merge["system_account"] != "SYS" {
		t.Errorf("merge: want the accounts and the SYS system account")
	}
	for _, k := range []string{"TOUCHSTREAM_NATS_PASSWORD", "NATS_SYSTEM_PASSWORD"} {
		if _, ok := v.Container.Env[k]; !ok {
			t.Errorf("container.env: no %s", k)
		}
	}
	p := loadCompose(t, composeEnv())
	if got, want := v.Container.Image.Repository+":"+v.Container.Image.Tag, p.Services["nats-1"].Image; got != want {
		t.Errorf("image %s, want compose's %s", got, want)
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
