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
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// subcommands are the touchstream commands a container may run.
var subcommands = []string{"gateway", "query", "redeem", "keys", "projector", "clock", "notify", "streams"}

// manifests are the decoded documents of k8s/, by kind.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	namespaces  []*corev1.Namespace
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	jobs        []*batchv1.Job
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadManifests decodes every YAML document under k8s/ (but the Helm values) strictly
// into the API type of its apiVersion and kind.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "nats-values.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			obj, err := decodeStrict([]byte(doc))
			if err != nil {
				t.Errorf("%s document %d: %v", f, i, err)
				continue
			}
			if obj == nil {
				continue
			}
			n++
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments = append(m.deployments, o)
			case *corev1.Service:
				m.services = append(m.services, o)
			case *corev1.ConfigMap:
				m.configMaps = append(m.configMaps, o)
			case *corev1.Secret:
				m.secrets = append(m.secrets, o)
			case *corev1.Namespace:
				m.namespaces = append(m.namespaces, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *batchv1.Job:
				m.jobs = append(m.jobs, o)
			}
		}
	}
	if n == 0 {
		t.Fatal("no manifests under k8s/")
	}
	return m
}

// decodeStrict decodes one YAML document into the API type of its kind; nil for a
// document of comments only. Unknown kinds, unknown fields and duplicate keys fail.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("type meta: %w", err)
	}
	if tm.APIVersion == "" && tm.Kind == "" {
		var rest map[string]any
		if err := yaml.Unmarshal(doc, &rest); err != nil {
			return nil, err
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("document without apiVersion and kind")
		}
		return nil, nil
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1 Job":
		obj = &batchv1.Job{}
	default:
		return nil, fmt.Errorf("unexpected kind %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	got := map[string]int{
		"Deployment": len(m.deployments), "Service": len(m.services), "ConfigMap": len(m.configMaps),
		"Secret": len(m.secrets), "Namespace": len(m.namespaces), "PodDisruptionBudget": len(m.pdbs),
		"HorizontalPodAutoscaler": len(m.hpas), "Job": len(m.jobs),
	}
	want := map[string]int{
		"Deployment": 7, "Service": 7, "ConfigMap": 4, "Secret": 14, "Namespace": 1,
		"PodDisruptionBudget": 5, "HorizontalPodAutoscaler": 2, "Job": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manifests by kind (-want +got):\n%s", diff)
	}
	ns := m.namespaces[0].Name
	check := func(kind string, meta metav1.ObjectMeta) {
		if meta.Namespace != ns {
			t.Errorf("%s %s: namespace %q, want %q", kind, meta.Name, meta.Namespace, ns)
		}
	}
	for _, o := range m.deployments {
		check("Deployment", o.ObjectMeta)
	}
	for _, o := range m.services {
		check("Service", o.ObjectMeta)
	}
	for _, o := range m.configMaps {
		check("ConfigMap", o.ObjectMeta)
	}
	for _, o := range m.pdbs {
		check("PodDisruptionBudget", o.ObjectMeta)
	}
	for _, o := range m.hpas {
		check("HorizontalPodAutoscaler", o.ObjectMeta)
	}
	for _, o := range m.jobs {
		check("Job", o.ObjectMeta)
	}
}

func TestDecodeStrictRefuses(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
		{"old api version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n"},
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatas: {a: b}\n"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b, a: c}\n"},
		{"no kind", "metadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeStrict([]byte(tt.doc)); err == nil {
				t.Errorf("decodeStrict(%q) = nil error, want one", tt.doc)
			}
		})
	}
}

func component(meta metav1.ObjectMeta) string { return meta.Labels["app.kubernetes.io/component"] }

func TestDeploymentsAreProductionReady(t *testing.T) {
	m := loadManifests(t)
	for _, d := range m.deployments {
		t.Run(d.Name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("selector %s does not match the pod labels %v", sel, d.Spec.Template.Labels)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
				t.Errorf("replicas: want at least 1")
			}
			checkPod(t, &d.Spec.Template.Spec, true)
		})
	}
	for _, j := range m.jobs {
		t.Run(j.Name, func(t *testing.T) { checkPod(t, &j.Spec.Template.Spec, false) })
	}
}

// checkPod asserts what every pod of touchstream needs; serving pods also need probes.
func checkPod(t *testing.T, p *corev1.PodSpec, serving bool) {
	t.Helper()
	psc := p.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if len(p.Containers) != 1 {
		t.Fatalf("containers: %d, want 1", len(p.Containers))
	}
	c := p.Containers[0]
	if len(c.Args) == 0 || !slices.Contains(subcommands, c.Args[0]) {
		t.Errorf("args %q: want a touchstream subcommand first (%v)", c.Args, subcommands)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("resources.requests.%s: missing", r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("resources.limits.memory: missing or below the request")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e, ok := env["TOUCHSTREAM_ADMIN_ADDR"]; !ok || !strings.HasSuffix(e.Value, ":9090") || strings.HasPrefix(e.Value, "127.") {
		t.Errorf("TOUCHSTREAM_ADMIN_ADDR %q: want a non-loopback :9090 (probes come from the kubelet)", e.Value)
	}
	if e, ok := env["DATABASE_URL"]; !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("DATABASE_URL: want it from a Secret (it carries the password)")
	}
	// The NATS URL carries no credentials (TestDeploymentIdentities reads it).
	if e, ok := env["TOUCHSTREAM_NATS_URL"]; !ok || e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
		t.Errorf("TOUCHSTREAM_NATS_URL: want it from a ConfigMap")
	}
	// A Secret volume readable by its owner (root) only is read through fsGroup.
	for _, v := range p.Volumes {
		if v.Secret != nil && (psc == nil || psc.FSGroup == nil || psc.RunAsGroup == nil || *psc.FSGroup != *psc.RunAsGroup) {
			t.Errorf("volume %s: Secret files mode 0400 need fsGroup equal to runAsGroup, or the service cannot read them", v.Name)
		}
	}
	if !serving {
		return
	}
	admin := false
	for _, p := range c.Ports {
		admin = admin || (p.Name == "admin" && p.ContainerPort == 9090)
	}
	if !admin {
		t.Errorf("ports: want admin 9090")
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: missing", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || pr.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s: %s on %s, want %s on the admin port", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path)
		}
	}
	// An HTTP service listens beyond loopback, on the port it declares.
	for _, p := range c.Ports {
		if p.Name != "http" {
			continue
		}
		found := false
		for _, e := range c.Env {
			if strings.HasSuffix(e.Name, "_ADDR") && e.Name != "TOUCHSTREAM_ADMIN_ADDR" {
				found = e.Value == fmt.Sprintf("0.0.0.0:%d", p.ContainerPort)
			}
		}
		if !found {
			t.Errorf("http port %d: want the service's *_ADDR at 0.0.0.0:%d", p.ContainerPort, p.ContainerPort)
		}
	}
}

func TestScalingAndDisruption(t *testing.T) {
	m := loadManifests(t)
	byName := map[string]*appsv1.Deployment{}
	for _, d := range m.deployments {
		byName[d.Name] = d
	}
	hpaFor := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		d, ok := byName[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok {
			t.Errorf("HPA %s: target %s %s %s is not a Deployment here", h.Name, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		hpaFor[component(d.ObjectMeta)] = h
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas <= *h.Spec.MinReplicas {
			t.Errorf("HPA %s: want 2 <= minReplicas < maxReplicas", h.Name)
		}
		if len(h.Spec.Metrics) == 0 {
			t.Errorf("HPA %s: no metrics", h.Name)
		}
		if d.Spec.Replicas != nil && h.Spec.MinReplicas != nil && *d.Spec.Replicas != *h.Spec.MinReplicas {
			t.Errorf("Deployment %s: replicas %d, want the HPA's minReplicas %d", d.Name, *d.Spec.Replicas, *h.Spec.MinReplicas)
		}
	}
	for _, c := range []string{"gateway", "query"} {
		if hpaFor[c] == nil {
			t.Errorf("%s: no HorizontalPodAutoscaler", c)
		}
	}

	for _, d := range m.deployments {
		replicas := *d.Spec.Replicas
		if h := hpaFor[component(d.ObjectMeta)]; h != nil {
			replicas = max(replicas, h.Spec.MaxReplicas)
		}
		var covering []string
		for _, p := range m.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				covering = append(covering, p.Name)
				if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
					t.Errorf("PDB %s: minAvailable %s blocks every eviction of %d replicas", p.Name, p.Spec.MinAvailable, *d.Spec.Replicas)
				}
				if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
					t.Errorf("PDB %s: want exactly one of minAvailable and maxUnavailable", p.Name)
				}
			}
		}
		switch {
		case replicas > 1 && len(covering) != 1:
			t.Errorf("Deployment %s (%d replicas): PodDisruptionBudgets %v, want exactly one", d.Name, replicas, covering)
		case replicas == 1 && len(covering) != 0:
			t.Errorf("Deployment %s (1 replica): PodDisruptionBudgets %v would block node drains", d.Name, covering)
		}
	}

	// The projector shares the partitions through leases: more replicas than
	// partitions stay idle. Its lease instance id is the pod name.
	partitions := prodStreams(t, m).Layout.Partitions
	p := byName["touchstream-projector"]
	if p == nil {
		t.Fatal("no touchstream-projector Deployment")
	}
	if r := int(*p.Spec.Replicas); r < 2 || r > partitions {
		t.Errorf("projector replicas %d: want 2..%d (the partition count)", r, partitions)
	}
	if hpaFor["projector"] != nil {
		t.Errorf("projector: autoscaled, want deliberate replicas")
	}
	inst := envOf(p.Spec.Template.Spec.Containers[0], "TOUCHSTREAM_INSTANCE")
	if inst == nil || inst.ValueFrom == nil || inst.ValueFrom.FieldRef == nil || inst.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("projector TOUCHSTREAM_INSTANCE: want the pod name (fieldRef metadata.name)")
	}
	if c := byName["touchstream-clock"]; c == nil || *c.Spec.Replicas != 1 {
		t.Errorf("clock: want one replica")
	}
}

func envOf(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func TestServicesSelectPods(t *testing.T) {
	m := loadManifests(t)
	for _, s := range m.services {
		var match []*appsv1.Deployment
		for _, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				match = append(match, d)
			}
		}
		if len(match) != 1 {
			t.Errorf("Service %s: selects %d Deployments, want 1", s.Name, len(match))
			continue
		}
		ports := map[string]int32{}
		for _, p := range match[0].Spec.Template.Spec.Containers[0].Ports {
			ports[p.Name] = p.ContainerPort
		}
		for _, p := range s.Spec.Ports {
			if got, ok := ports[p.TargetPort.String()]; !ok || got != p.Port {
				t.Errorf("Service %s port %s: targetPort %s is not container port %d", s.Name, p.Name, p.TargetPort.String(), p.Port)
			}
		}
	}
}

// TestReferencesResolve checks that every Secret and ConfigMap a pod refers to is
// defined, with the keys it reads.
func TestReferencesResolve(t *testing.T) {
	m := loadManifests(t)
	secretKeys := map[string][]string{}
	for _, s := range m.secrets {
		for k := range s.StringData {
			secretKeys[s.Name] = append(secretKeys[s.Name], k)
		}
	}
	configMaps := map[string]map[string]string{}
	for _, c := range m.configMaps {
		configMaps[c.Name] = c.Data
	}
	pods := map[string]*corev1.PodSpec{}
	for _, d := range m.deployments {
		pods["Deployment "+d.Name] = &d.Spec.Template.Spec
	}
	for _, j := range m.jobs {
		pods["Job "+j.Name] = &j.Spec.Template.Spec
	}
	for name, p := range pods {
		c := p.Containers[0]
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := e.ValueFrom.SecretKeyRef
				if !slices.Contains(secretKeys[ref.Name], ref.Key) {
					t.Errorf("%s env %s: Secret %s has no key %s", name, e.Name, ref.Name, ref.Key)
				}
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				ref := e.ValueFrom.ConfigMapKeyRef
				if _, ok := configMaps[ref.Name][ref.Key]; !ok {
					t.Errorf("%s env %s: ConfigMap %s has no key %s", name, e.Name, ref.Name, ref.Key)
				}
			}
		}
		mounts := map[string]string{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.Name] = vm.MountPath
			if !vm.ReadOnly && vm.Name != "tmp" {
				t.Errorf("%s volume %s: mounted writable, want readOnly", name, vm.Name)
			}
		}
		for _, v := range p.Volumes {
			if _, ok := mounts[v.Name]; !ok {
				t.Errorf("%s volume %s: not mounted", name, v.Name)
			}
			if v.Secret != nil {
				if _, ok := secretKeys[v.Secret.SecretName]; !ok {
					t.Errorf("%s volume %s: no Secret %s", name, v.Name, v.Secret.SecretName)
				}
				if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0 {
					t.Errorf("%s volume %s: defaultMode must be 0400 (key files readable by their owner only)", name, v.Name)
				}
				// A file setting points into the mounted Secret, at one of its keys.
				for _, e := range c.Env {
					if fileSetting(e.Name) && filepath.Dir(e.Value) == mounts[v.Name] &&
						!slices.Contains(secretKeys[v.Secret.SecretName], filepath.Base(e.Value)) {
						t.Errorf("%s env %s: %s is not a key of Secret %s", name, e.Name, e.Value, v.Secret.SecretName)
					}
				}
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.ConfigMap == nil {
						continue
					}
					if _, ok := configMaps[src.ConfigMap.Name]; !ok {
						t.Errorf("%s volume %s: no ConfigMap %s", name, v.Name, src.ConfigMap.Name)
					}
				}
			}
		}
		for _, e := range c.Env {
			if !fileSetting(e.Name) || e.Value == "" {
				continue
			}
			mounted := false
			for _, path := range mounts {
				mounted = mounted || filepath.Dir(e.Value) == path
			}
			if !mounted {
				t.Errorf("%s env %s: %s is on no mounted volume", name, e.Name, e.Value)
			}
		}
	}
}

// fileSetting reports whether a setting names a file the service reads (a key, a
// seed, a token file).
func fileSetting(name string) bool {
	return strings.HasSuffix(name, "_FILE") || name == "TOUCHSTREAM_NATS_CREDS"
}

// TestSecretsAreTemplates keeps real secrets out of the repository.
func TestSecretsAreTemplates(t *testing.T) {
	m := loadManifests(t)
	for _, s := range m.secrets {
		if len(s.Data) != 0 {
			t.Errorf("Secret %s: data holds values; want stringData placeholders only", s.Name)
		}
		if len(s.StringData) == 0 {
			t.Errorf("Secret %s: no keys", s.Name)
		}
		for k, v := range s.StringData {
			if v != "REPLACE_ME" {
				t.Errorf("Secret %s key %s: a value other than the placeholder REPLACE_ME", s.Name, k)
			}
		}
	}
}

// webhookSecrets are the secret_env names of a webhooks file: the notifier reads
// each from its environment.
func webhookSecrets(t *testing.T, name string, b []byte) []string {
	t.Helper()
	var hooks struct {
		Webhooks []struct {
			SecretEnv string `json:"secret_env"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(b, &hooks); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, h := range hooks.Webhooks {
		out = append(out, h.SecretEnv)
	}
	return out
}

// TestEnvNamesExist checks every environment variable set on a touchstream container,
// in the manifests, the compose file and the Dockerfile, against what the command the
// container runs reads: the variables its --help names (every flag's default), and for
// the notifier the secret_env names of the webhooks file it is given. A renamed or
// misplaced setting fails here rather than being silently ignored in production.
func TestEnvNamesExist(t *testing.T) {
	m := loadManifests(t)
	k8sHooks := webhookSecrets(t, "ConfigMap webhooks.json", []byte(configMap(t, m, "touchstream-deploy").Data["webhooks.json"]))
	imageHooks := webhookSecrets(t, "webhooks.json", readFile(t, "webhooks.json"))
	known := map[string][]string{}
	check := func(where string, args, hooks, names []string) {
		key := strings.Join(args, " ")
		if known[key] == nil {
			known[key] = commandEnv(t, args)
		}
		reads := known[key]
		if serviceIdentity(args) == "notify" {
			reads = append(slices.Clone(reads), hooks...)
		}
		for _, n := range names {
			if !slices.Contains(reads, n) {
				t.Errorf("%s sets %s: touchstream %s does not read it", where, n, key)
			}
		}
	}
	envNames := func(c corev1.Container) []string {
		var out []string
		for _, e := range c.Env {
			out = append(out, e.Name)
		}
		return out
	}
	for _, d := range m.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		check("Deployment "+d.Name, c.Args, k8sHooks, envNames(c))
	}
	for _, j := range m.jobs {
		c := j.Spec.Template.Spec.Containers[0]
		check("Job "+j.Name, c.Args, k8sHooks, envNames(c))
	}
	p := loadCompose(t, composeEnv(t))
	for name, s := range touchstreamServices(p) {
		var names []string
		for k := range s.Environment {
			names = append(names, k)
		}
		check("compose service "+name, s.Command, imageHooks, names)
	}
	// The image's ENV apply to every command: each is a common setting.
	var image []string
	for _, m := range regexp.MustCompile(`\b(TOUCHSTREAM_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(readFile(t, "../Dockerfile")), -1) {
		image = append(image, m[1])
	}
	if len(image) == 0 {
		t.Fatal("Dockerfile: no TOUCHSTREAM_ ENV")
	}
	for _, args := range [][]string{{"gateway"}, {"query"}, {"redeem"}, {"keys"}, {"projector"}, {"clock"}, {"notify", "run"}, {"streams", "apply"}} {
		check("Dockerfile ENV", args, nil, image)
	}
}

// streamsDefinition mirrors events/streams.Definition, strictly.
type streamsDefinition struct {
	Layout struct {
		Prefix     string `json:"subject_prefix"`
		Partitions int    `json:"partitions"`
		Streams    []struct {
			Name  string `json:"name"`
			First int    `json:"first_partition"`
			Last  int    `json:"last_partition"`
		} `json:"streams"`
	} `json:"layout"`
	Touchpoints struct {
		Replicas        int      `json:"replicas"`
		MaxBytes        int64    `json:"max_bytes"`
		DuplicateWindow string   `json:"duplicate_window"`
		MaxMsgSize      int32    `json:"max_msg_size"`
		Compression     bool     `json:"compression"`
		PlacementTags   []string `json:"placement_tags,omitempty"`
	} `json:"touchpoints"`
	Ingest  bool `json:"ingest_transform"`
	Signals struct {
		Name            string `json:"name"`
		Replicas        int    `json:"replicas"`
		MaxAge          string `json:"max_age"`
		MaxBytes        int64  `json:"max_bytes"`
		DuplicateWindow string `json:"duplicate_window"`
		MaxMsgSize      int32  `json:"max_msg_size"`
	} `json:"signals"`
}

func decodeStreams(t *testing.T, name string, b []byte) streamsDefinition {
	t.Helper()
	var d streamsDefinition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func configMap(t *testing.T, m *manifests, name string) *corev1.ConfigMap {
	t.Helper()
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

func prodStreams(t *testing.T, m *manifests) streamsDefinition {
	t.Helper()
	return decodeStreams(t, "ConfigMap streams.json", []byte(configMap(t, m, "touchstream-deploy").Data["streams.json"]))
}

// TestProductionStreams checks the production stream definition: R3, the development
// file's partitioning, every partition in exactly one stream, several streams so that
// their leaders spread over the nodes; the compose copy equal to the ConfigMap's.
func TestProductionStreams(t *testing.T) {
	m := loadManifests(t)
	prod := prodStreams(t, m)
	dev := decodeStreams(t, "streams.json", readFile(t, "streams.json"))
	composeCopy := decodeStreams(t, "compose/streams.json", readFile(t, "compose/streams.json"))
	if diff := cmp.Diff(prod, composeCopy); diff != "" {
		t.Errorf("compose/streams.json differs from the ConfigMap's (-configmap +compose):\n%s", diff)
	}
	if prod.Touchpoints.Replicas != 3 || prod.Signals.Replicas != 3 {
		t.Errorf("replicas: touchpoints %d, signals %d; want 3 and 3", prod.Touchpoints.Replicas, prod.Signals.Replicas)
	}
	if prod.Layout.Partitions != dev.Layout.Partitions || prod.Layout.Prefix != dev.Layout.Prefix {
		t.Errorf("layout: %d partitions under %q, want the development file's %d under %q",
			prod.Layout.Partitions, prod.Layout.Prefix, dev.Layout.Partitions, dev.Layout.Prefix)
	}
	if len(prod.Layout.Streams) < 3 {
		t.Errorf("layout: %d streams, want at least one per node (3)", len(prod.Layout.Streams))
	}
	if prod.Ingest && len(prod.Layout.Streams) != 1 {
		t.Errorf("ingest_transform needs a single stream")
	}
	owner := make([]int, prod.Layout.Partitions)
	for _, s := range prod.Layout.Streams {
		for p := s.First; p <= s.Last; p++ {
			if p < 0 || p >= len(owner) {
				t.Errorf("stream %s: partition %d out of range", s.Name, p)
				continue
			}
			owner[p]++
		}
	}
	for p, n := range owner {
		if n != 1 {
			t.Errorf("partition %d: in %d streams, want 1", p, n)
		}
	}
	if prod.Touchpoints.DuplicateWindow != dev.Touchpoints.DuplicateWindow || prod.Touchpoints.MaxMsgSize != dev.Touchpoints.MaxMsgSize {
		t.Errorf("touchpoints duplicate window / message size differ from the development file's")
	}
}

// TestConfigMapCopies keeps the ConfigMap's copies of deploy/*.json equal to them, and
// its webhooks wired to the notifier's environment.
func TestConfigMapCopies(t *testing.T) {
	m := loadManifests(t)
	cm := configMap(t, m, "touchstream-deploy")
	for _, name := range []string{"tiers.json", "loyalty.json", "churn-rules.json", "privacy.json"} {
		var got, want any
		if err := json.Unmarshal([]byte(cm.Data[name]), &got); err != nil {
			t.Errorf("ConfigMap %s: %v", name, err)
			continue
		}
		if err := json.Unmarshal(readFile(t, name), &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ConfigMap %s differs from deploy/%s (-file +configmap):\n%s", name, name, diff)
		}
	}
	var hooks struct {
		Webhooks []struct {
			Name      string `json:"name"`
			URL       string `json:"url"`
			SecretEnv string `json:"secret_env"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(cm.Data["webhooks.json"]), &hooks); err != nil {
		t.Fatalf("ConfigMap webhooks.json: %v", err)
	}
	var notify *appsv1.Deployment
	for _, d := range m.deployments {
		if component(d.ObjectMeta) == "notify" {
			notify = d
		}
	}
	if notify == nil {
		t.Fatal("no notify Deployment")
	}
	for _, h := range hooks.Webhooks {
		if !strings.HasPrefix(h.URL, "https://") {
			t.Errorf("webhook %s: %s, want https in production", h.Name, h.URL)
		}
		e := envOf(notify.Spec.Template.Spec.Containers[0], h.SecretEnv)
		if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("webhook %s: notify has no %s from a Secret", h.Name, h.SecretEnv)
		}
	}
	// The channel file is a template that the gateway refuses until it is filled in:
	// the development channels (well-known keys) must never reach production.
	ch := configMap(t, m, "touchstream-channels").Data["channels.json"]
	dev := readFile(t, "channels.json")
	if !strings.Contains(ch, "REPLACE-WITH") || bytes.Contains(dev, []byte(strings.TrimSpace(ch))) {
		t.Errorf("ConfigMap touchstream-channels: want the placeholder template, not the development channels")
	}
	for _, k := range []string{"streams.json", "tiers.json", "loyalty.json", "churn-rules.json", "privacy.json", "webhooks.json"} {
		if _, ok := cm.Data[k]; !ok {
			t.Errorf("ConfigMap touchstream-deploy: no %s", k)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nkeyEnv sets every public nkey variable accounts.conf names to a fresh user key,
// as the nats-server's environment would, and returns them by variable.
func nkeyEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`\$(NKEY_[A-Z0-9_]+)`).FindAllStringSubmatch(string(b), -1) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		t.Setenv(m[1], pub)
		out[m[1]] = pub
	}
	return out
}

// TestNATSAccounts parses nats/accounts.conf and compose/accounts.conf (the identity
// table rendered by `touchstream nats accounts` for the development and the
// production stream layouts; services/internal/natsauth checks the first,
// TestProductionAccounts the second) with the server's own parser: only the system user has a password; every identity of the
// TOUCHSTREAM account is an nkey user with explicit publish and subscribe allow lists;
// exactly one may use the whole JetStream API (streams apply), none may publish on
// every log subject, and the channels publish only on their own door subjects.
func TestNATSAccounts(t *testing.T) {
	for _, path := range []string{"nats/accounts.conf", "compose/accounts.conf"} {
		t.Run(path, func(t *testing.T) { checkAccounts(t, path) })
	}
}

func checkAccounts(t *testing.T, path string) {
	t.Helper()
	keys := nkeyEnv(t)
	t.Setenv("NATS_SYSTEM_PASSWORD", "test-sys")
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range o.Users {
		if u.Account == nil || u.Account.Name != "SYS" {
			t.Errorf("password user %s outside the system account: identities are nkeys", u.Username)
		}
	}
	if len(o.Nkeys) < len(keys) || len(keys) < 11 {
		t.Fatalf("%d nkey users for %d variables: want one per service (11) and channel", len(o.Nkeys), len(keys))
	}
	admins, channels := 0, 0
	for _, u := range o.Nkeys {
		p := u.Permissions
		if u.Account == nil || u.Account.Name != "TOUCHSTREAM" || p == nil || p.Publish == nil || p.Subscribe == nil ||
			len(p.Publish.Allow) == 0 || len(p.Subscribe.Allow) == 0 {
			t.Fatalf("nkey user %s: account %v, permissions %+v: want TOUCHSTREAM with allow lists", u.Nkey, u.Account, p)
		}
		for _, s := range p.Publish.Allow {
			switch {
			case s == "$JS.API.>":
				admins++
			case s == "tp.>" || s == "tp.*.>" || s == ">":
				t.Errorf("nkey user %s may publish on every log subject (%s)", u.Nkey, s)
			}
		}
		if strings.HasPrefix(p.Publish.Allow[0], "ingest.") {
			channels++
			door := strings.Join(strings.SplitN(p.Publish.Allow[0], ".", 3)[:2], ".") + "."
			for _, s := range p.Publish.Allow {
				if !strings.HasPrefix(s, door) {
					t.Errorf("channel %s may publish on %s", door, s)
				}
			}
		}
	}
	if admins != 1 {
		t.Errorf("%d identities may use the whole JetStream API, want 1 (streams)", admins)
	}
	if channels == 0 {
		t.Error("no channel identities")
	}
}

// podOf is a workload's pod and what the tests call it.
type podOf struct {
	name     string
	spec     *corev1.PodSpec
	replicas int32
}

func pods(m *manifests) []podOf {
	var out []podOf
	for _, d := range m.deployments {
		r := int32(1)
		if d.Spec.Replicas != nil {
			r = *d.Spec.Replicas
		}
		out = append(out, podOf{"Deployment " + d.Name, &d.Spec.Template.Spec, r})
	}
	for _, j := range m.jobs {
		out = append(out, podOf{"Job " + j.Name, &j.Spec.Template.Spec, 1})
	}
	return out
}

// resolvedEnv is a container's environment with its ConfigMap references resolved
// (Secrets stay unknown: their values are placeholders here).
func resolvedEnv(m *manifests, c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			for _, cm := range m.configMaps {
				if cm.Name == e.ValueFrom.ConfigMapKeyRef.Name {
					out[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
				}
			}
		}
	}
	return out
}

// TestDeploymentIdentities checks that every Deployment and Job connects to NATS as
// the identity it runs as: without credentials in the URL, with the seed of that
// identity (one the table of the accounts knows) from its own Secret, mounted
// read-only and readable by its owner only, and with no other identity's seed.
func TestDeploymentIdentities(t *testing.T) {
	m := loadManifests(t)
	users := accountUsers(t, string(readFile(t, "compose/accounts.conf")))
	secrets := map[string][]string{}
	for _, s := range m.secrets {
		for k := range s.StringData {
			secrets[s.Name] = append(secrets[s.Name], k)
		}
	}
	used := map[string]bool{}
	for _, p := range pods(m) {
		t.Run(p.name, func(t *testing.T) {
			c := p.spec.Containers[0]
			env := resolvedEnv(m, c)
			if err := natsURLWithoutCredentials(env["TOUCHSTREAM_NATS_URL"]); err != nil || env["TOUCHSTREAM_NATS_URL"] == "" {
				t.Errorf("TOUCHSTREAM_NATS_URL %q: %v", env["TOUCHSTREAM_NATS_URL"], err)
			}
			id := serviceIdentity(c.Args)
			if _, ok := serviceUser(users, id); !ok {
				t.Fatalf("args %q connect as %q: not a service identity of the accounts", c.Args, id)
			}
			secret := "touchstream-nats-" + id
			used[secret] = true
			var mount *corev1.VolumeMount
			for _, v := range p.spec.Volumes {
				if v.Secret == nil || !strings.HasPrefix(v.Secret.SecretName, "touchstream-nats-") {
					continue
				}
				if v.Secret.SecretName != secret {
					t.Errorf("volume %s: Secret %s, another identity's seed", v.Name, v.Secret.SecretName)
					continue
				}
				if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
					t.Errorf("volume %s: defaultMode must be 0400", v.Name)
				}
				for i := range c.VolumeMounts {
					if c.VolumeMounts[i].Name == v.Name {
						mount = &c.VolumeMounts[i]
					}
				}
			}
			if mount == nil {
				t.Fatalf("no volume of Secret %s mounted", secret)
			}
			if !mount.ReadOnly {
				t.Errorf("mount %s: want readOnly", mount.Name)
			}
			key := id + ".nk"
			if got, want := env["TOUCHSTREAM_NATS_CREDS"], filepath.Join(mount.MountPath, key); got != want {
				t.Errorf("TOUCHSTREAM_NATS_CREDS %q, want %q (the seed of %s)", got, want, id)
			}
			if !slices.Contains(secrets[secret], key) {
				t.Errorf("Secret %s: no key %s", secret, key)
			}
		})
	}
	for name, keys := range secrets {
		if !strings.HasPrefix(name, "touchstream-nats-") || name == "touchstream-nats-auth" {
			continue
		}
		if !used[name] {
			t.Errorf("Secret %s: no pod uses it", name)
		}
		if id := strings.TrimPrefix(name, "touchstream-nats-"); !slices.Equal(keys, []string{id + ".nk"}) {
			t.Errorf("Secret %s: keys %v, want only %s.nk", name, keys, id)
		}
	}
}

// TestQueryTokenSource checks that the query Deployment would start: a token source
// (the identity provider, from a ConfigMap that is a template until filled in) and,
// for its replicas behind one Service, one stream ticket key from a Secret file.
func TestQueryTokenSource(t *testing.T) {
	m := loadManifests(t)
	var q *podOf
	for _, p := range pods(m) {
		if serviceIdentity(p.spec.Containers[0].Args) == "query" {
			q = &p
		}
	}
	if q == nil {
		t.Fatal("no query Deployment")
	}
	c := q.spec.Containers[0]
	env := resolvedEnv(m, c)
	mounted := func(path string) bool {
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(path) == vm.MountPath {
				return true
			}
		}
		return false
	}
	if err := tokenSource(env, mounted); err != nil {
		t.Errorf("%s: %v", q.name, err)
	}
	if f := env["TOUCHSTREAM_ACCESS_FILE"]; f != "" {
		t.Errorf("TOUCHSTREAM_ACCESS_FILE %s: production staff tokens come from the identity provider", f)
	}
	if q.replicas > 1 {
		e := envOf(c, "TOUCHSTREAM_STREAM_TICKET_KEY_FILE")
		if e == nil || !mounted(e.Value) {
			t.Errorf("%d replicas: want TOUCHSTREAM_STREAM_TICKET_KEY_FILE on a mounted Secret (one ticket key for all)", q.replicas)
		}
	}
	for _, k := range []string{"issuer", "audience", "jwks-url"} {
		if v := configMap(t, m, "touchstream-oidc").Data[k]; !strings.Contains(v, "REPLACE-WITH") {
			t.Errorf("ConfigMap touchstream-oidc %s %q: want the placeholder template in the repository", k, v)
		}
	}
}
