// Command chart writes the Helm chart charts/portcullis from the kustomize install, its one
// source of truth (make chart): the objects of manifests/ (the base), manifests/monitoring and
// manifests/optional, with values for what operators set. Its test fails when the chart is
// stale; make test-chart lints it with helm and checks that it renders what kustomize builds.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func main() {
	verify := flag.String("verify", "", "instead of writing the chart: the helm binary to lint and render it with, checking it against kustomize")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	var err error
	if *verify != "" {
		err = verifyChart(root, *verify)
	} else {
		var files map[string][]byte
		if files, err = generate(root); err == nil {
			err = write(filepath.Join(root, "charts", "portcullis"), files)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chart: %v\n", err)
		os.Exit(1)
	}
}

// stale returns the chart's files that differ from what generate writes.
func stale(root string) ([]string, error) {
	files, err := generate(root)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "charts", "portcullis")
	var out []string
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			out = append(out, name)
		}
	}
	for _, sub := range []string{"templates", "crds"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if _, ok := files[sub+"/"+e.Name()]; !ok {
				out = append(out, sub+"/"+e.Name()+" (not generated)")
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// verifyChart lints the chart with helm and checks that it renders what kustomize builds: by
// default the base, with auditOnly the audit-only overlay, with the options on the base plus the
// monitoring kit and the NetworkPolicy.
func verifyChart(root, helm string) error {
	files, err := stale(root)
	switch {
	case err != nil:
		return err
	case len(files) > 0:
		return fmt.Errorf("the chart is stale (run make chart): %v", files)
	}
	chart := filepath.Join(root, "charts", "portcullis")
	netpol, err := os.ReadFile(filepath.Join(root, "manifests", "optional", "network-policy.yaml"))
	if err != nil {
		return err
	}
	var np map[string]any
	if err := yaml.Unmarshal(netpol, &np); err != nil {
		return err
	}
	for _, c := range []struct {
		set  string
		dirs []string
		more []map[string]any
	}{
		{"", []string{"manifests"}, nil}, // but the Namespace, which helm install -n creates
		{"createNamespace=true", []string{"manifests"}, nil},
		{"createNamespace=true,auditOnly=true", []string{"manifests/overlays/audit-only"}, nil},
		{"createNamespace=true,monitoring.enabled=true,networkPolicy.enabled=true", []string{"manifests", "manifests/monitoring"}, []map[string]any{np}},
	} {
		args := []string{"lint", chart}
		if c.set != "" {
			args = append(args, "--set", c.set)
		}
		fmt.Println("== helm", strings.Join(args, " "))
		if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil { //nolint:gosec // the helm given
			return fmt.Errorf("helm lint: %w\n%s", err, out)
		}
		args = []string{"template", "portcullis", chart, "--namespace", "portcullis-system", "--include-crds"}
		if c.set != "" {
			args = append(args, "--set", c.set)
		}
		fmt.Println("== helm", strings.Join(args, " "), "renders kustomize", strings.Join(c.dirs, " + "))
		out, err := exec.Command(helm, args...).Output() //nolint:gosec // the helm given
		if err != nil {
			return fmt.Errorf("helm template: %w", err)
		}
		got, err := objects(out)
		if err != nil {
			return err
		}
		want := c.more
		for _, d := range c.dirs {
			objs, err := build(filepath.Join(root, d))
			if err != nil {
				return err
			}
			want = append(want, objs...)
		}
		if !strings.Contains(c.set, "createNamespace=true") {
			want = slices.DeleteFunc(want, func(o map[string]any) bool { return o["kind"] == "Namespace" })
		}
		if diff := compare(got, want); diff != "" {
			return fmt.Errorf("helm template --set %q differs from kustomize %v:\n%s", c.set, c.dirs, diff)
		}
	}
	return nil
}

// objects splits rendered YAML into objects.
func objects(y []byte) ([]map[string]any, error) {
	var out []map[string]any
	for doc := range strings.SplitSeq(string(y), "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// compare says how two sets of objects differ, by kind and name; "" when they do not.
func compare(got, want []map[string]any) string {
	key := func(m map[string]any) string { return fmt.Sprint(m["kind"]) + "/" + nameOf(m) }
	index := func(objs []map[string]any) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, o := range objs {
			out[key(o)] = o
		}
		return out
	}
	g, w := index(got), index(want)
	var diffs []string
	for k, wo := range w {
		switch gotObj, ok := g[k]; {
		case !ok:
			diffs = append(diffs, "missing "+k)
		case !reflect.DeepEqual(normalize(gotObj), normalize(wo)):
			gy, _ := yaml.Marshal(gotObj)
			wy, _ := yaml.Marshal(wo)
			diffs = append(diffs, fmt.Sprintf("%s differs:\n--- helm\n%s--- kustomize\n%s", k, gy, wy))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	slices.Sort(diffs)
	return strings.Join(diffs, "\n")
}

// normalize drops what Helm adds of its own (none yet) and goes through JSON, so that numbers
// compare as numbers.
func normalize(m map[string]any) any {
	y, _ := yaml.Marshal(m)
	var out any
	_ = yaml.Unmarshal(y, &out)
	return out
}

// header marks every generated file.
const header = "# Generated by make chart from the kustomize install (manifests/): edit those, not this.\n"

// build is kustomize's output for a directory, as objects.
func build(dir string) ([]map[string]any, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var out []map[string]any
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// generate returns the chart's files, by path within the chart.
func generate(root string) (map[string][]byte, error) {
	base, err := build(filepath.Join(root, "manifests"))
	if err != nil {
		return nil, err
	}
	monitoring, err := build(filepath.Join(root, "manifests", "monitoring"))
	if err != nil {
		return nil, err
	}
	netpol, err := os.ReadFile(filepath.Join(root, "manifests", "optional", "network-policy.yaml"))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	values := map[string]any{}
	for _, obj := range base {
		kind, name := obj["kind"].(string), nameOf(obj)
		if kind == "CustomResourceDefinition" {
			y, err := yaml.Marshal(obj)
			if err != nil {
				return nil, err
			}
			files["crds/"+name+".yaml"] = y // Helm installs crds/ before the templates
			continue
		}
		y, err := template(obj, values)
		if err != nil {
			return nil, err
		}
		if kind == "Namespace" { // helm install -n portcullis-system --create-namespace makes it
			y = []byte(header + "{{- if .Values.createNamespace }}\n" + strings.TrimPrefix(string(y), header) + "{{- end }}\n")
		}
		files["templates/"+strings.ToLower(kind)+"-"+name+".yaml"] = y
	}
	var mon bytes.Buffer
	mon.WriteString(header + "{{- if .Values.monitoring.enabled }}\n")
	for i, obj := range monitoring {
		if i > 0 {
			mon.WriteString("---\n")
		}
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		mon.Write(escapeBraces(y))
	}
	mon.WriteString("{{- end }}\n")
	files["templates/monitoring.yaml"] = mon.Bytes()
	files["templates/network-policy.yaml"] = []byte(header + "{{- if .Values.networkPolicy.enabled }}\n" +
		string(escapeBraces(stripComments(netpol))) + "{{- end }}\n")
	values["monitoring"] = map[string]any{"enabled": false}
	values["networkPolicy"] = map[string]any{"enabled": false}
	values["auditOnly"] = false
	values["createNamespace"] = false
	values["flags"] = map[string]any{}
	v, err := yaml.Marshal(values)
	if err != nil {
		return nil, err
	}
	files["values.yaml"] = append([]byte(header+valuesDoc), v...)
	files["Chart.yaml"] = []byte(header + chartYAML)
	return files, nil
}

// template writes one object of the base as a template, with the values operators set
// replaced by references to values, whose defaults (what the base says) it records.
func template(obj map[string]any, values map[string]any) ([]byte, error) {
	var repl []replacement
	switch obj["kind"] {
	case "Deployment":
		spec := obj["spec"].(map[string]any)
		values["replicas"] = spec["replicas"]
		spec["replicas"] = "__REPLICAS__"
		repl = append(repl, replacement{"__REPLICAS__", "{{ .Values.replicas }}"})
		pod := spec["template"].(map[string]any)["spec"].(map[string]any)
		c := pod["containers"].([]any)[0].(map[string]any)
		repo, tag, _ := strings.Cut(c["image"].(string), ":")
		values["image"] = map[string]any{"repository": repo, "tag": tag, "pullPolicy": c["imagePullPolicy"]}
		c["image"] = "__IMAGE__"
		repl = append(repl, replacement{"__IMAGE__", `"{{ .Values.image.repository }}:{{ .Values.image.tag }}"`})
		if c["imagePullPolicy"] != nil {
			c["imagePullPolicy"] = "__PULL__"
			repl = append(repl, replacement{"__PULL__", "{{ .Values.image.pullPolicy }}"})
		}
		values["resources"] = c["resources"]
		c["resources"] = "__RESOURCES__"
		repl = append(repl, replacement{"resources: __RESOURCES__", "resources:\n{{- toYaml .Values.resources | nindent __INDENT__ }}"})
		c["args"] = append(c["args"].([]any), "__EXTRA_ARGS__")
		repl = append(repl, replacement{"- __EXTRA_ARGS__", "{{- if .Values.auditOnly }}\n__INDENT__- --audit-only\n{{- end }}\n{{- range $flag, $value := .Values.flags }}\n__INDENT__- --{{ $flag }}={{ $value }}\n{{- end }}"})
	case "ValidatingWebhookConfiguration":
		for _, w := range obj["webhooks"].([]any) {
			w := w.(map[string]any)
			if w["name"] == "validate.portcullis.dev" {
				values["failurePolicy"] = w["failurePolicy"]
				w["failurePolicy"] = "__FAILURE_POLICY__"
				repl = append(repl, replacement{"__FAILURE_POLICY__", "{{ if .Values.auditOnly }}Ignore{{ else }}{{ .Values.failurePolicy }}{{ end }}"})
			}
		}
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return nil, err
	}
	y = escapeBraces(y)
	for _, r := range repl {
		y = r.apply(y)
	}
	return append([]byte(header), y...), nil
}

// replacement replaces a placeholder with template text; __INDENT__ in the text takes the
// placeholder's indentation (spaces, or the number of them after nindent).
type replacement struct{ placeholder, text string }

func (r replacement) apply(y []byte) []byte {
	lines := strings.Split(string(y), "\n")
	for i, l := range lines {
		at := strings.Index(l, r.placeholder)
		if at < 0 {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		text := r.text
		if strings.Contains(text, "nindent __INDENT__") {
			text = strings.ReplaceAll(text, "__INDENT__", fmt.Sprint(indent+2))
		}
		text = strings.ReplaceAll(text, "__INDENT__", strings.Repeat(" ", indent))
		lines[i] = l[:at] + text + l[at+len(r.placeholder):]
	}
	return []byte(strings.Join(lines, "\n"))
}

// braces are the objects' own "{{ ... }}" (the alerts' templates).
var braces = regexp.MustCompile(`\{\{[^}]*\}\}`)

// escapeBraces keeps the objects' own braces from Helm's template engine.
func escapeBraces(y []byte) []byte {
	return braces.ReplaceAllFunc(y, func(m []byte) []byte {
		return []byte("{{ `" + string(m) + "` }}")
	})
}

func stripComments(y []byte) []byte {
	var out []string
	for l := range strings.SplitSeq(string(y), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return []byte(strings.TrimLeft(strings.Join(out, "\n"), "\n"))
}

func nameOf(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return name
}

// write replaces the chart directory's generated files with files.
func write(dir string, files map[string][]byte) error {
	if err := os.RemoveAll(filepath.Join(dir, "templates")); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(dir, "crds")); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { //nolint:gosec // a chart is world-readable
			return err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil { //nolint:gosec // a chart is world-readable
			return err
		}
	}
	return nil
}

const chartYAML = `apiVersion: v2
name: portcullis
description: Kubernetes admission policy engine - Pod Security, resources, labels, CEL, cosign image signatures, default probes - with a background audit and OpenReports reports.
type: application
version: 0.1.0
appVersion: v0.1.0
home: https://github.com/portcullis-dev/portcullis
license: Apache-2.0
keywords: [admission, policy, security, pod-security, cosign]
`

const valuesDoc = `# The chart installs what kubectl apply -k manifests installs, in the namespace
# portcullis-system: helm install portcullis charts/portcullis -n portcullis-system
# --create-namespace (or createNamespace: true, to have the chart hold it). Values:
#   replicas, image, resources      the server's Deployment
#   failurePolicy                   of the validating webhook: Fail (enforce even when the
#                                   server is unreachable) or Ignore
#   auditOnly                       every Deny becomes Audit, and failurePolicy Ignore: the
#                                   first rollout (as manifests/overlays/audit-only)
#   flags                           more server flags, e.g. the tenant-safety limits:
#                                   {namespace-max-policies: 20, namespace-max-rules: 100,
#                                    max-namespaced-rules: 2000, max-review-memory: 64Mi}
#                                   (webhook --help lists them all)
#   monitoring.enabled              the monitoring kit (PodMonitor, PrometheusRule, Grafana
#                                   dashboard; needs the Prometheus Operator's CRDs)
#   networkPolicy.enabled           the NetworkPolicy of manifests/optional
`
