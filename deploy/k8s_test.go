package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// kinds are the object types the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() runtime.Object{
	"v1/Service":                    func() runtime.Object { return &corev1.Service{} },
	"v1/ConfigMap":                  func() runtime.Object { return &corev1.ConfigMap{} },
	"apps/v1/StatefulSet":           func() runtime.Object { return &appsv1.StatefulSet{} },
	"apps/v1/Deployment":            func() runtime.Object { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget": func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
}

// splitDocuments splits a YAML stream at its "---" separator lines and
// drops documents that hold only comments.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(d), &n); err == nil && len(n.Content) == 0 {
			continue // empty or only comments
		}
		docs = append(docs, []byte(d))
	}
	return docs
}

// decodeStrict decodes one document into its k8s.io/api type; unknown,
// duplicate or wrongly cased fields and unknown kinds are errors.
func decodeStrict(doc []byte) (runtime.Object, error) {
	var tm metav1.TypeMeta
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unexpected apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	// As the API server decodes: YAML to JSON (duplicate keys fail), then
	// case-sensitive JSON with unknown and duplicate fields as errors.
	j, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// manifests decodes every document of every file in k8s/.
func manifests(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	var objs []runtime.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
				continue
			}
			objs = append(objs, obj)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return objs
}

func TestDecodeStrictRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {headless: true}\n"},
		{"wrong case", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {readinessProbe: {}}}}\n"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: three}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Servic\nmetadata: {name: x}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tc.doc))
			t.Log(err)
			if err == nil {
				t.Fatalf("decoded %q without error", tc.doc)
			}
		})
	}
	if _, err := decodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None}\n")); err != nil {
		t.Fatalf("valid Service: %v", err)
	}
}

// objects are the decoded manifests by kind and name.
type objects struct {
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	statefuls   map[string]*appsv1.StatefulSet
	deployments map[string]*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
}

func index(t *testing.T, objs []runtime.Object) objects {
	o := objects{
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		statefuls: map[string]*appsv1.StatefulSet{}, deployments: map[string]*appsv1.Deployment{},
	}
	for _, obj := range objs {
		switch v := obj.(type) {
		case *corev1.Service:
			o.services[v.Name] = v
		case *corev1.ConfigMap:
			o.configMaps[v.Name] = v
		case *appsv1.StatefulSet:
			o.statefuls[v.Name] = v
		case *appsv1.Deployment:
			o.deployments[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			o.pdbs = append(o.pdbs, v)
		default:
			t.Fatalf("unindexed %T", obj)
		}
	}
	return o
}

// podTemplates are the pod templates of every workload, by workload name.
func (o objects) podTemplates() map[string]*corev1.PodTemplateSpec {
	m := map[string]*corev1.PodTemplateSpec{}
	for n, s := range o.statefuls {
		m["statefulset/"+n] = &s.Spec.Template
	}
	for n, d := range o.deployments {
		m["deployment/"+n] = &d.Spec.Template
	}
	return m
}

func TestManifestsFitTogether(t *testing.T) {
	o := index(t, manifests(t))

	// Every workload's selector picks its own pods; every one is covered by
	// a PodDisruptionBudget, and its pods run as non-root without privilege
	// escalation.
	workloads := map[string]*metav1.LabelSelector{}
	for n, s := range o.statefuls {
		workloads["statefulset/"+n] = s.Spec.Selector
	}
	for n, d := range o.deployments {
		workloads["deployment/"+n] = d.Spec.Selector
	}
	for name, tmpl := range o.podTemplates() {
		sel, err := metav1.LabelSelectorAsSelector(workloads[name])
		if err != nil {
			t.Fatalf("%s selector: %v", name, err)
		}
		if !sel.Matches(labels.Set(tmpl.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", name, sel, tmpl.Labels)
		}
		covered := 0
		for _, p := range o.pdbs {
			ps, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err != nil {
				t.Fatalf("pdb %s selector: %v", p.Name, err)
			}
			if ps.Matches(labels.Set(tmpl.Labels)) {
				covered++
			}
		}
		if covered != 1 {
			t.Errorf("%s: covered by %d PodDisruptionBudgets, want 1", name, covered)
		}
		psc := tmpl.Spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		for _, c := range tmpl.Spec.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
			}
		}
	}

	// Every Service selects the pods of one workload, on ports they have.
	for _, svc := range o.services {
		var matched []*corev1.PodTemplateSpec
		for _, tmpl := range o.podTemplates() {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tmpl.Labels)) {
				matched = append(matched, tmpl)
			}
		}
		if len(svc.Spec.Selector) == 0 || len(matched) != 1 {
			t.Errorf("service %s: selector %v matches %d workloads, want 1", svc.Name, svc.Spec.Selector, len(matched))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := containerPort(matched[0].Spec.Containers, p.TargetPort.String()); !ok {
				t.Errorf("service %s port %s: target %s is no container port", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}

	checkEtcd(t, o)
	checkCrowdpilot(t, o)
}

// containerPort finds a container port by name or number.
func containerPort(cs []corev1.Container, port string) (int32, bool) {
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func checkEtcd(t *testing.T, o objects) {
	ss, ok := o.statefuls["etcd"]
	if !ok {
		t.Fatal("no etcd StatefulSet")
	}
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 3 {
		t.Errorf("etcd replicas = %v, want 3", ss.Spec.Replicas)
	}
	svc, ok := o.services[ss.Spec.ServiceName]
	if !ok {
		t.Fatalf("etcd serviceName %q: no such Service", ss.Spec.ServiceName)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("etcd Service: clusterIP %q publishNotReadyAddresses %v, want a headless Service publishing not-ready peers", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	// The initial cluster names exactly the members the StatefulSet makes.
	args := strings.Join(ss.Spec.Template.Spec.Containers[0].Args, " ")
	for i := range 3 {
		want := fmt.Sprintf("etcd-%d=https://etcd-%d.%s.", i, i, svc.Name)
		if !strings.Contains(args, want) {
			t.Errorf("etcd --initial-cluster lacks %q", want)
		}
	}
	if strings.Contains(args, "etcd-3=") {
		t.Error("etcd --initial-cluster names a fourth member")
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Error("etcd has no persistent volume")
	}
	// Whoever can write to etcd steers the cluster (issue 10, finding 3):
	// TLS with client certificates on the client and the peer port, from
	// files a mounted Secret holds.
	c := ss.Spec.Template.Spec.Containers[0]
	flags := map[string]string{}
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			flags[k] = v
		}
	}
	for _, k := range []string{"listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls"} {
		if !strings.HasPrefix(flags[k], "https://") {
			t.Errorf("etcd --%s=%s, want https", k, flags[k])
		}
	}
	for _, k := range []string{"client-cert-auth", "peer-client-cert-auth"} {
		if flags[k] != "true" {
			t.Errorf("etcd --%s=%q, want true", k, flags[k])
		}
	}
	for _, k := range []string{"cert-file", "key-file", "trusted-ca-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file"} {
		if !inSecret(ss.Spec.Template.Spec, c, flags[k]) {
			t.Errorf("etcd --%s=%q is not a file of a mounted Secret", k, flags[k])
		}
	}
}

// inSecret reports whether path is a file of a Secret volume mounted in c
// (its directory the mount path, its name a key, as a Secret without items
// projects them).
func inSecret(pod corev1.PodSpec, c corev1.Container, path string) bool {
	if path == "" {
		return false
	}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName != "" && len(v.Secret.Items) == 0 && filepath.Dir(path) == m.MountPath {
				return true
			}
		}
	}
	return false
}

func checkCrowdpilot(t *testing.T, o objects) {
	d, ok := o.deployments["crowdpilot"]
	if !ok {
		t.Fatal("no crowdpilot Deployment")
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("crowdpilot pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}

	// Probes on the admin port, which is where the node's admin listener is.
	adminPort, ok := containerPort(pod.Containers, "admin")
	if !ok {
		t.Fatal("crowdpilot has no container port named admin")
	}
	if v := env["CROWDPILOT_ADMIN"].Value; !strings.HasSuffix(v, fmt.Sprintf(":%d", adminPort)) {
		t.Errorf("CROWDPILOT_ADMIN = %q, want the admin container port %d", v, adminPort)
	}
	dataPort, _ := containerPort(pod.Containers, "http")
	if v := env["CROWDPILOT_LISTEN"].Value; !strings.HasSuffix(v, fmt.Sprintf(":%d", dataPort)) {
		t.Errorf("CROWDPILOT_LISTEN = %q, want the http container port %d", v, dataPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: not an HTTP GET", p.name)
			continue
		}
		port, ok := containerPort(pod.Containers, p.probe.HTTPGet.Port.String())
		if p.probe.HTTPGet.Path != p.path || !ok || port != adminPort {
			t.Errorf("%s probe: GET %s on port %s, want %s on the admin port", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// Each pod is its own node: its ID and advertised addresses are its own.
	for name, want := range map[string]string{
		"CROWDPILOT_ID":              "$(POD_NAME)",
		"CROWDPILOT_ADVERTISE":       fmt.Sprintf("$(POD_IP):%d", dataPort),
		"CROWDPILOT_ADVERTISE_ADMIN": fmt.Sprintf("$(POD_IP):%d", adminPort),
	} {
		if env[name].Value != want {
			t.Errorf("%s = %q, want %q", name, env[name].Value, want)
		}
	}
	if ref := env["CROWDPILOT_ADMIN_TOKEN"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name == "" {
		t.Error("CROWDPILOT_ADMIN_TOKEN does not come from a Secret")
	}

	// The config file the node reads is the ConfigMap's, mounted where
	// --config points.
	cfgPath := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	var cm *corev1.ConfigMap
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && filepath.Dir(cfgPath) == m.MountPath {
				cm = o.configMaps[v.ConfigMap.Name]
			}
		}
	}
	if cm == nil || cm.Data[filepath.Base(cfgPath)] == "" {
		t.Fatalf("--config %q is not a key of a mounted ConfigMap", cfgPath)
	}
	var conf map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data[filepath.Base(cfgPath)]), &conf); err != nil {
		t.Fatalf("ConfigMap %s: %v", cm.Name, err)
	}
	checkEtcdURLs(t, o, conf["etcd"])
	for _, k := range []string{"etcd-cacert", "etcd-cert", "etcd-key"} {
		if p, _ := conf[k].(string); !inSecret(pod, c, p) {
			t.Errorf("ConfigMap %s = %v, want a file of a mounted Secret", k, conf[k])
		}
	}
	grace := 10 * time.Second // the node's default --shutdown-grace
	if s, ok := conf["shutdown-grace"].(string); ok {
		var err error
		if grace, err = time.ParseDuration(s); err != nil {
			t.Fatalf("shutdown-grace %q: %v", s, err)
		}
	}

	// Shutdown: preStop, then SIGTERM (leave membership, up to 2 s; then
	// drain within shutdown-grace) must fit before the kubelet's SIGKILL.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Fatal("crowdpilot has no preStop hook")
	}
	var preStop time.Duration
	if s := c.Lifecycle.PreStop.Sleep; s != nil {
		preStop = time.Duration(s.Seconds) * time.Second
	}
	const leave = 2 * time.Second
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("crowdpilot: no terminationGracePeriodSeconds")
	}
	if tg := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; tg <= preStop+leave+grace {
		t.Errorf("terminationGracePeriodSeconds %v <= preStop %v + leaving %v + shutdown-grace %v", tg, preStop, leave, grace)
	}
	// A rollout never takes a node away before its replacement is ready.
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("crowdpilot rollout: want maxUnavailable 0")
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Instructions, continuation lines joined, comments dropped.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(b), " ")
	var stages [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %q", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(stages))
	}
	if !strings.Contains(stages[0][0], "golang:") {
		t.Errorf("builder stage %q is not a golang image", stages[0][0])
	}
	final := stages[len(stages)-1]
	if f := final[0]; !strings.Contains(f, "distroless") && !strings.HasSuffix(f, " scratch") {
		t.Errorf("final stage %q is neither distroless nor scratch", f)
	}
	var user, entrypoint string
	for _, ins := range final {
		word, rest, _ := strings.Cut(ins, " ")
		switch strings.ToUpper(word) {
		case "RUN":
			t.Errorf("final stage runs %q: it has no shell", ins)
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entrypoint = rest
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	if !strings.HasPrefix(entrypoint, "[") {
		t.Errorf("ENTRYPOINT %q is not in exec form (no shell in the image)", entrypoint)
	}
	if !bytes.Contains(b, []byte("CGO_ENABLED=0")) {
		t.Error("the binary is not built static (CGO_ENABLED=0)")
	}
}

// checkEtcdURLs: the nodes' --etcd names each member of the etcd
// StatefulSet, through its headless Service, on the client port.
func checkEtcdURLs(t *testing.T, o objects, v any) {
	t.Helper()
	s, _ := v.(string)
	ss := o.statefuls["etcd"]
	if s == "" || ss == nil {
		t.Fatalf("ConfigMap etcd = %v, want the etcd members' URLs", v)
	}
	port, _ := containerPort(ss.Spec.Template.Spec.Containers, "client")
	var want []string
	for i := range int(*ss.Spec.Replicas) {
		want = append(want, fmt.Sprintf("https://%s-%d.%s:%d", ss.Name, i, ss.Spec.ServiceName, port))
	}
	if got := strings.Split(s, ","); !slices.Equal(got, want) {
		t.Errorf("ConfigMap etcd = %v, want %v", got, want)
	}
}
