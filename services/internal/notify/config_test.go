package notify_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/notify"
)

func TestConfigValidate(t *testing.T) {
	valid := func() notify.Config {
		return notify.Config{
			Webhooks: []notify.Webhook{{Name: "retention-desk", URL: "https://desk.example/hooks", Types: []string{"churn", "loyalty.tier_changed"},
				SecretEnv: "DESK_SECRET", Timeout: notify.Duration(5 * time.Second)}},
			Env: config.MapEnv(map[string]string{"DESK_SECRET": testSecret, "SHORT": "tooshort"}),
		}
	}
	tests := []struct {
		name   string
		change func(c *notify.Config)
		want   []string // substrings of the error; none: valid
	}{
		{"valid", func(*notify.Config) {}, nil},
		{"no webhooks", func(c *notify.Config) { c.Webhooks = nil }, []string{"Webhooks: none configured"}},
		{"empty name", func(c *notify.Config) { c.Webhooks[0].Name = "" }, []string{"webhooks[0].name: empty"}},
		{"bad name", func(c *notify.Config) { c.Webhooks[0].Name = "Retention Desk" }, []string{`webhooks[0] (Retention Desk).name "Retention Desk"`}},
		{"duplicate name", func(c *notify.Config) { c.Webhooks = append(c.Webhooks, c.Webhooks[0]) }, []string{`webhooks[1] (retention-desk).name "retention-desk": used twice`}},
		{"relative url", func(c *notify.Config) { c.Webhooks[0].URL = "/hooks" }, []string{"webhooks[0] (retention-desk).url: must be an absolute http or https URL"}},
		{"empty url", func(c *notify.Config) { c.Webhooks[0].URL = "" }, []string{".url: empty"}},
		{"bad type prefix", func(c *notify.Config) { c.Webhooks[0].Types = []string{"churn.*"} }, []string{`.types[0] "churn.*"`}},
		{"secret_env empty", func(c *notify.Config) { c.Webhooks[0].SecretEnv = "" }, []string{".secret_env: empty"}},
		{"secret in the file", func(c *notify.Config) { c.Webhooks[0].SecretEnv = "s3cr3t-value!" }, []string{`.secret_env "s3cr3t-value!": not an environment variable name`}},
		{"secret unset", func(c *notify.Config) { c.Webhooks[0].SecretEnv = "MISSING" }, []string{".secret_env MISSING: environment variable unset or empty"}},
		{"secret short", func(c *notify.Config) { c.Webhooks[0].SecretEnv = "SHORT" }, []string{".secret_env SHORT: secret of 8 bytes"}},
		{"negative timeout", func(c *notify.Config) { c.Webhooks[0].Timeout = -1 }, []string{".timeout -1ns"}},
		{"bad start", func(c *notify.Config) { c.Webhooks[0].Start = "oldest" }, []string{`.start "oldest"`}},
		{"no env", func(c *notify.Config) { c.Env = nil }, []string{"Env: required"}},
		{"max below initial", func(c *notify.Config) { c.InitialInterval = time.Minute; c.MaxInterval = time.Second }, []string{"MaxInterval 1s: must be at least InitialInterval"}},
		{"multiplier", func(c *notify.Config) { c.Multiplier = 0.5 }, []string{"Multiplier 0.5"}},
		{"jitter", func(c *notify.Config) { c.Jitter = 1.5 }, []string{"Jitter 1.5"}},
		{"ack wait below the retry budget", func(c *notify.Config) { c.AckWait = time.Second }, []string{"AckWait 1s: shorter than the retry budget"}},
		{"several at once", func(c *notify.Config) { c.Webhooks[0].URL = ""; c.Multiplier = 0.5 }, []string{".url: empty", "Multiplier 0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want an error naming %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	hooks, err := notify.Load(filepath.Join("..", "..", "..", "deploy", "webhooks.json"))
	if err != nil {
		t.Fatalf("deploy/webhooks.json: %v", err)
	}
	if len(hooks) == 0 {
		t.Fatal("deploy/webhooks.json lists no webhook")
	}
	dir := t.TempDir()
	for name, tt := range map[string]struct{ content, want string }{
		"unknown field":  {`{"webhooks":[{"name":"a","url":"https://x","secret_env":"A","secret":"plain"}]}`, `unknown field "secret"`},
		"bad timeout":    {`{"webhooks":[{"name":"a","url":"https://x","secret_env":"A","timeout":5}]}`, "duration must be a string"},
		"invalid fields": {`{"webhooks":[{"name":"a","url":"ftp://x","secret_env":"A"}]}`, "webhooks[0] (a).url"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := notify.Load(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Load = %v, want an error containing %q", name, err, tt.want)
		}
	}
}
