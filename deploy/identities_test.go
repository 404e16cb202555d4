package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

// TestProductionAccounts keeps compose/accounts.conf equal to the identity table's
// rendering for the production stream layout (`-update` rewrites it).
func TestProductionAccounts(t *testing.T) {
	want := renderProductionAccounts(t)
	const path = "compose/accounts.conf"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, string(readFile(t, path))); diff != "" {
		t.Errorf("%s is not `touchstream nats accounts` over channels.json and compose/streams.json (go test -run TestProductionAccounts -update) (-want +got):\n%s", path, diff)
	}
	// The development rendering names the same identities, with the same variables.
	dev, prod := accountUsers(t, string(readFile(t, "nats/accounts.conf"))), accountUsers(t, want)
	name := func(us []accountUser) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.Name+" "+u.Key)
		}
		return out
	}
	if diff := cmp.Diff(name(dev), name(prod)); diff != "" {
		t.Errorf("identities of nats/accounts.conf and compose/accounts.conf (-nats +compose):\n%s", diff)
	}
}

// jsAPIVerbs are the JetStream API requests the identities are allowed, each
// followed by the stream's name.
var jsAPIVerbs = []string{
	"$JS.API.STREAM.INFO.", "$JS.API.STREAM.MSG.GET.", "$JS.API.DIRECT.GET.",
	"$JS.API.CONSUMER.CREATE.", "$JS.API.CONSUMER.INFO.", "$JS.API.CONSUMER.MSG.NEXT.",
	"$JS.API.CONSUMER.DELETE.", "$JS.API.CONSUMER.DURABLE.CREATE.", "$JS.ACK.",
}

// jsStream is the stream a JetStream subject is about; "" for the whole API.
func jsStream(subject string) (string, error) {
	if subject == "$JS.API.>" {
		return "", nil
	}
	for _, v := range jsAPIVerbs {
		if rest, ok := strings.CutPrefix(subject, v); ok {
			stream, _, _ := strings.Cut(rest, ".")
			return stream, nil
		}
	}
	return "", fmt.Errorf("%s: a JetStream subject of no known request (add it to jsAPIVerbs)", subject)
}

// TestProductionAccountsNameProductionStreams fails when the accounts the cluster
// runs allow JetStream requests on streams it does not hold: an accounts file
// rendered for another layout lets no service read the log.
func TestProductionAccountsNameProductionStreams(t *testing.T) {
	prod := decodeStreams(t, "compose/streams.json", readFile(t, "compose/streams.json"))
	held := []string{prod.Signals.Name}
	for _, s := range prod.Layout.Streams {
		held = append(held, s.Name)
	}
	users := accountUsers(t, string(readFile(t, "compose/accounts.conf")))
	named := map[string][]string{}
	for _, u := range users {
		for _, s := range u.Publish {
			if !strings.HasPrefix(s, "$JS.") {
				continue
			}
			stream, err := jsStream(s)
			if err != nil {
				t.Errorf("%s: %v", u.Name, err)
				continue
			}
			if stream == "" {
				continue
			}
			if !slices.Contains(held, stream) {
				t.Errorf("%s may %s: the production layout has no stream %s (%v)", u.Name, s, stream, held)
			}
			if !slices.Contains(named[u.Name], stream) {
				named[u.Name] = append(named[u.Name], stream)
			}
		}
	}
	// The projector folds every partition and forwards signals: it reads every stream.
	slices.Sort(held)
	got := slices.Sorted(slices.Values(named["projector"]))
	if diff := cmp.Diff(held, got); diff != "" {
		t.Errorf("streams the projector may read (-held +allowed):\n%s", diff)
	}
}

// helmValues is the part of k8s/nats-values.yaml the tests read.
type helmValues struct {
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
		Env map[string]struct {
			Value     string `json:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `json:"name"`
					Key  string `json:"key"`
				} `json:"secretKeyRef"`
			} `json:"valueFrom"`
		} `json:"env"`
	} `json:"container"`
}

const helmValuesPath = "k8s/nats-values.yaml"

// TestNATSHelmValues checks the values for the official chart against the node
// configurations (three nodes, JetStream on a persistent file store, the same image)
// and against compose/accounts.conf: the chart renders the same accounts, and every
// variable they reference reaches the servers from the touchstream-nats-auth Secret.
func TestNATSHelmValues(t *testing.T) {
	accounts := string(readFile(t, "compose/accounts.conf"))
	b := readFile(t, helmValuesPath)
	regen := generateHelmSections(t, b, accountUsers(t, accounts), accountVariables(accounts))
	if *update && !bytes.Equal(regen, b) {
		if err := os.WriteFile(helmValuesPath, regen, 0o644); err != nil {
			t.Fatal(err)
		}
		b = regen
	}
	if diff := cmp.Diff(string(regen), string(b)); diff != "" {
		t.Errorf("%s: generated sections differ from compose/accounts.conf (go test -run TestNATSHelmValues -update) (-want +got):\n%s", helmValuesPath, diff)
	}

	var v helmValues
	if err := yaml.Unmarshal(b, &v); err != nil { // the chart's values: more than this test reads
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster: enabled %v, replicas %d; want 3", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled || c.JetStream.FileStore.PVC.Size == "" {
		t.Errorf("jetstream: want a file store on a persistent volume")
	}
	p := loadCompose(t, composeEnv(t))
	if got, want := v.Container.Image.Repository+":"+v.Container.Image.Tag, p.Services["nats-1"].Image; got != want {
		t.Errorf("image %s, want compose's %s", got, want)
	}

	// Every variable of the accounts, and nothing else, from the Secret's keys.
	m := loadManifests(t)
	var authKeys []string
	for _, s := range m.secrets {
		if s.Name == "touchstream-nats-auth" {
			for k := range s.StringData {
				authKeys = append(authKeys, k)
			}
		}
	}
	vars := accountVariables(accounts)
	for _, name := range vars {
		e, ok := v.Container.Env[name]
		switch {
		case !ok:
			t.Errorf("container.env: no %s (the accounts reference it: the servers would not start)", name)
		case e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "touchstream-nats-auth":
			t.Errorf("container.env %s: want it from Secret touchstream-nats-auth", name)
		case !slices.Contains(authKeys, e.ValueFrom.SecretKeyRef.Key):
			t.Errorf("container.env %s: Secret touchstream-nats-auth has no key %s", name, e.ValueFrom.SecretKeyRef.Key)
		}
	}
	for name := range v.Container.Env {
		if !slices.Contains(vars, name) {
			t.Errorf("container.env %s: not referenced by the accounts", name)
		}
	}
	slices.Sort(authKeys)
	if diff := cmp.Diff(slices.Sorted(slices.Values(vars)), authKeys); diff != "" {
		t.Errorf("Secret touchstream-nats-auth keys (-accounts' variables +secret):\n%s", diff)
	}

	// The chart's rendering of the merged settings holds the accounts of
	// compose/accounts.conf, value for value once the variables are resolved.
	nkeyEnv(t)
	t.Setenv("NATS_SYSTEM_PASSWORD", "test-sys")
	rendered := renderHelmConfig(t, v.Config.Merge)
	got, err := conf.ParseFile(rendered)
	if err != nil {
		t.Fatalf("the chart's nats.conf: %v", err)
	}
	want, err := conf.ParseFile("compose/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"accounts", "system_account"} {
		if diff := cmp.Diff(want[key], got[key]); diff != "" {
			t.Errorf("%s of the chart's nats.conf (-compose/accounts.conf +nats-values.yaml):\n%s", key, diff)
		}
	}
	o, err := server.ProcessConfigFile(rendered)
	if err != nil {
		t.Fatalf("nats-server refuses the chart's nats.conf: %v", err)
	}
	if n := len(accountUsers(t, accounts)); len(o.Nkeys) != n {
		t.Errorf("the chart's nats.conf: %d nkey users, want %d", len(o.Nkeys), n)
	}
}

// chartRaw is how the chart unquotes a value "<< X >>" in the JSON it writes
// (nats.formatConfig).
var chartRaw = regexp.MustCompile(`"<<\s+(.*)\s+>>"`)

// renderHelmConfig writes the merged settings as the chart writes nats.conf: pretty
// JSON, "<< X >>" unquoted. It returns the file's path.
func renderHelmConfig(t *testing.T, merge map[string]any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merge); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, chartRaw.ReplaceAll(b.Bytes(), []byte("$1")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// generateHelmSections returns the values file with its generated sections written
// from the accounts: the TOUCHSTREAM users and the servers' environment.
func generateHelmSections(t *testing.T, file []byte, users []accountUser, vars []string) []byte {
	t.Helper()
	var u strings.Builder
	for _, a := range users {
		fmt.Fprintf(&u, "# %s: %s\n", a.Name, a.Summary)
		key := a.Key
		if v := a.Variable(); v != "" {
			key = "<< $" + v + " >>"
		}
		fmt.Fprintf(&u, "- nkey: %s\n  permissions:\n", key)
		fmt.Fprintf(&u, "    publish: {allow: %s}\n", jsonList(t, a.Publish))
		fmt.Fprintf(&u, "    subscribe: {allow: %s}\n", jsonList(t, a.Subscribe))
		if a.Responses {
			u.WriteString("    allow_responses: true\n")
		}
	}
	var e strings.Builder
	for _, v := range vars {
		if strings.HasPrefix(v, "NKEY_") {
			fmt.Fprintf(&e, "%s: {valueFrom: {secretKeyRef: {name: touchstream-nats-auth, key: %s}}}\n", v, v)
		}
	}
	out := replaceSection(t, file, "users", u.String())
	return replaceSection(t, out, "env", e.String())
}

// replaceSection replaces the lines between "# BEGIN GENERATED <name>" and
// "# END GENERATED <name>" with body, indented as the markers are.
func replaceSection(t *testing.T, file []byte, name, body string) []byte {
	t.Helper()
	re := regexp.MustCompile(`(?s)\n( *)# BEGIN GENERATED ` + name + `\n(?:.*?\n)?? *# END GENERATED ` + name + `\n`)
	m := re.FindSubmatchIndex(file)
	if m == nil {
		t.Fatalf("%s: no section %q between # BEGIN GENERATED %s and # END GENERATED %s", helmValuesPath, name, name, name)
	}
	indent := string(file[m[2]:m[3]])
	var b bytes.Buffer
	b.Write(file[:m[0]])
	fmt.Fprintf(&b, "\n%s# BEGIN GENERATED %s\n", indent, name)
	for _, line := range strings.SplitAfter(body, "\n") {
		if line != "" {
			b.WriteString(indent + line)
		}
	}
	fmt.Fprintf(&b, "%s# END GENERATED %s\n", indent, name)
	b.Write(file[m[1]:])
	return b.Bytes()
}
