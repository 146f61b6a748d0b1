// Command render renders a Helm chart without helm: the subset of Helm 3's template engine
// that charts/leash uses, so the chart can be tested on machines where no helm binary exists
// (Debian has none, npm has none).
//
// Implemented: text/template with sprig's TxtFuncMap minus env/expandenv (as Helm), Helm's
// include, tpl, required, fail, toYaml, fromYaml, toJson, fromJson; .Values (values.yaml
// deep-merged with every -f file in order, a null deleting a key), .Release, .Chart (from
// Chart.yaml), .Capabilities (KubeVersion, APIVersions.Has), .Template; shared named
// templates from templates/_*.tpl; missingkey=zero with "<no value>" blanked; numbers in
// values as float64 (Helm reads values through JSON); kubeVersion constraint of Chart.yaml.
// Not implemented: subcharts and dependencies, .Files, lookup, NOTES.txt, hooks, library
// charts, --set parsing, values.schema.json validation (the jest test does that with ajv on
// the merged values this command prints with --values-out).
//
// Usage: render [-f values.yaml]... [--name r] [--namespace ns] [--kube-version v1.30.0]
//
//	[--api-versions a,b] [--values-out file] <chart dir>
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	yaml2 "gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var files multiFlag
	flag.Var(&files, "f", "values file merged over the chart's values.yaml (repeatable, later wins)")
	name := flag.String("name", "leash", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version the chart is rendered for")
	apiVersions := flag.String("api-versions", "", "extra API versions available, comma-separated (e.g. monitoring.coreos.com/v1)")
	valuesOut := flag.String("values-out", "", "write the merged values as JSON to this file")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... [flags] <chart dir>")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), files, *name, *namespace, *kubeVersion, *apiVersions, *valuesOut)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

// readYAML reads a YAML file the way Helm sees values (sigs.k8s.io/yaml): parsed by yaml.v2,
// so YAML 1.1 scalars such as `yes` and `on` are booleans as in Helm, then through JSON, so
// maps are map[string]interface{} and every number is a float64.
func readYAML(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml2.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	v, err = jsonable(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, fmt.Errorf("%s: top level must be a map: %w", path, err)
	}
	return m, nil
}

// jsonable turns yaml.v2's map[interface{}]interface{} into JSON-ready maps; keys become
// strings as sigs.k8s.io/yaml makes them.
func jsonable(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			c, err := jsonable(val)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, val := range t {
			c, err := jsonable(val)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return v, nil
	}
}

// coalesce deep-merges src over dst as Helm does for -f files: maps merge recursively,
// anything else replaces, and a null removes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

type apiVersionSet map[string]bool

// Has mirrors Helm's .Capabilities.APIVersions.Has.
func (a apiVersionSet) Has(v string) bool { return a[v] }

// toYAML mirrors Helm's toYaml (sigs.k8s.io/yaml: JSON first, then yaml.v2, sorted keys,
// no trailing newline).
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml2.Unmarshal(j, &obj); err != nil {
		return ""
	}
	data, err := yaml2.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var v interface{}
	m := map[string]interface{}{}
	if err := yaml2.Unmarshal([]byte(s), &v); err != nil {
		m["Error"] = err.Error()
		return m
	}
	v, err := jsonable(v)
	if err != nil {
		m["Error"] = err.Error()
		return m
	}
	j, _ := json.Marshal(v)
	_ = json.Unmarshal(j, &m)
	return m
}

func toJSON(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(j)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func render(chartDir string, valueFiles []string, name, namespace, kubeVersion, extraAPIs, valuesOut string) (string, error) {
	chartMeta, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return "", errors.New("Chart.yaml: name is required")
	}
	kv, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return "", fmt.Errorf("--kube-version: %w", err)
	}
	if c, ok := chartMeta["kubeVersion"].(string); ok && c != "" {
		constraint, err := semver.NewConstraint(c)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml kubeVersion: %w", err)
		}
		if !constraint.Check(kv) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", c, kubeVersion)
		}
	}
	// Helm exposes Chart.yaml fields capitalised (.Chart.Name, .Chart.AppVersion).
	chart := map[string]interface{}{}
	for k, v := range chartMeta {
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}

	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		override, err := readYAML(f)
		if err != nil {
			return "", err
		}
		values = coalesce(values, override)
	}
	if valuesOut != "" {
		j, _ := json.MarshalIndent(values, "", "  ")
		if err := os.WriteFile(valuesOut, j, 0o644); err != nil {
			return "", err
		}
	}

	apis := apiVersionSet{"v1": true, "apps/v1": true, "policy/v1": true, "networking.k8s.io/v1": true}
	for _, a := range strings.Split(extraAPIs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			apis[a] = true
		}
	}

	root := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env") // Helm removes these: a render must not depend on the machine.
	delete(funcs, "expandenv")
	includeDepth := 0
	funcs["include"] = func(name string, data interface{}) (string, error) {
		includeDepth++
		defer func() { includeDepth-- }()
		if includeDepth > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	root.Funcs(funcs)

	tplDir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(tplDir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			return "", fmt.Errorf("templates/%s: sub-folders are not supported by this renderer", e.Name())
		}
		n := e.Name()
		if n == "NOTES.txt" || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") || strings.HasSuffix(n, ".tpl")) {
			continue
		}
		src, err := os.ReadFile(filepath.Join(tplDir, n))
		if err != nil {
			return "", err
		}
		full := chartName + "/templates/" + n
		if _, err := root.New(full).Parse(string(src)); err != nil {
			return "", fmt.Errorf("parse error in %s", strings.TrimPrefix(err.Error(), "template: "))
		}
		names = append(names, n)
	}
	sort.Strings(names)

	var out strings.Builder
	for _, n := range names {
		// Partials (leading underscore) only define named templates; Helm does not render them.
		if strings.HasPrefix(n, "_") {
			continue
		}
		full := chartName + "/templates/" + n
		data := map[string]interface{}{
			"Values": values,
			"Chart":  chart,
			"Release": map[string]interface{}{
				"Name": name, "Namespace": namespace, "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
			"Capabilities": map[string]interface{}{
				"KubeVersion": map[string]interface{}{
					"Version": "v" + kv.String(), "GitVersion": "v" + kv.String(),
					"Major": fmt.Sprint(kv.Major()), "Minor": fmt.Sprint(kv.Minor()),
				},
				"APIVersions": apis,
			},
			"Template": map[string]interface{}{"Name": full, "BasePath": chartName + "/templates"},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, data); err != nil {
			return "", executionError(err)
		}
		body := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(body) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.TrimSpace(body))
	}
	return out.String(), nil
}

// executionError shortens text/template's error the way Helm does for fail and required:
// "execution error at (<file>:<line>:<col>): <message>".
func executionError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "template: ")
	where := msg
	if i := strings.Index(msg, ": executing "); i >= 0 {
		where = msg[:i]
	}
	for _, marker := range []string{"error calling fail: ", "error calling required: "} {
		if i := strings.LastIndex(msg, marker); i >= 0 {
			return fmt.Errorf("execution error at (%s): %s", where, msg[i+len(marker):])
		}
	}
	return errors.New(msg)
}
