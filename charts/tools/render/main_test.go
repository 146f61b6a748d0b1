package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chart writes a one-template chart and returns its folder.
func chart(t *testing.T, values, tpl string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "templates"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v2\nname: c\nversion: 1.2.3\nappVersion: \"9.9\"\nkubeVersion: \">=1.25.0-0\"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "values.yaml"), []byte(values), 0o644))
	must(os.WriteFile(filepath.Join(dir, "templates", "t.yaml"), []byte(tpl), 0o644))
	for name, body := range extra {
		must(os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

func renderString(t *testing.T, dir string, files ...string) (string, error) {
	t.Helper()
	return render(dir, files, "rel", "ns", "v1.30.0", "", "")
}

func TestFunctions(t *testing.T) {
	cases := []struct {
		name, values, tpl, want string
	}{
		{"include and a _helpers define", "a: 1", `{{ include "x" . }}`, "x=1"},
		{"tpl renders a string as a template", "greet: '{{ .Release.Name }}-{{ .Values.num }}'\nnum: 2", `{{ tpl .Values.greet . }}`, "rel-2"},
		{"toYaml sorts keys, 2-space maps, no trailing newline", "m: {b: [1, 2], a: x}", `{{ toYaml .Values.m }}|`, "a: x\nb:\n- 1\n- 2|"},
		{"numbers are float64 as in Helm", "num: 2592000", `{{ .Values.num }} {{ int .Values.num }}`, "2.592e+06 2592000"},
		{"YAML 1.1 booleans as in Helm (yaml.v2), keys too", "yes: on\nn: 1", `{{ index .Values "true" }} {{ index .Values "false" }}`, "true 1"},
		{"missing keys render empty", "a: {}", `[{{ .Values.a.b }}]`, "[]"},
		{"Chart, Release, Capabilities", "", `{{ .Chart.Name }} {{ .Chart.AppVersion }} {{ .Release.Namespace }} {{ .Capabilities.KubeVersion.Minor }} {{ .Capabilities.APIVersions.Has "apps/v1" }} {{ .Capabilities.APIVersions.Has "x/v1" }}`, "c 9.9 ns 30 true false"},
		{"fromYaml and toJson", "", `{{ toJson (fromYaml "b: 1\na: [x]") }}`, `{"a":["x"],"b":1}`},
		{"sprig is there, env is not", "", `{{ "abc" | upper | nindent 2 }}`, "\n  ABC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := chart(t, c.values, c.tpl, map[string]string{"templates/_helpers.tpl": `{{- define "x" -}}x={{ .Values.a }}{{- end -}}`})
			out, err := renderString(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			body := strings.TrimPrefix(out, "---\n# Source: c/templates/t.yaml\n")
			if body != strings.TrimSpace(c.want)+"\n" && body != c.want+"\n" {
				t.Fatalf("got %q, want %q", body, c.want)
			}
		})
	}
}

func TestEnvIsRemoved(t *testing.T) {
	if _, err := renderString(t, chart(t, "", `{{ env "HOME" }}`, nil)); err == nil || !strings.Contains(err.Error(), `"env" not defined`) {
		t.Fatalf("env must not exist, got %v", err)
	}
}

func TestFailAndRequired(t *testing.T) {
	_, err := renderString(t, chart(t, "", `{{ fail "no way" }}`, nil))
	if err == nil || !strings.HasPrefix(err.Error(), "execution error at (c/templates/t.yaml:1:3): no way") {
		t.Fatalf("fail: got %v", err)
	}
	_, err = renderString(t, chart(t, "s: ''", `{{ required "s is required" .Values.s }}`, nil))
	if err == nil || !strings.HasSuffix(err.Error(), ": s is required") {
		t.Fatalf("required: got %v", err)
	}
}

func TestValuesMerge(t *testing.T) {
	dir := chart(t, "a: {x: 1, w: 2, z: 3}\nl: [1, 2]", `{{ toJson .Values }}`, nil)
	over := filepath.Join(t.TempDir(), "o.yaml")
	if err := os.WriteFile(over, []byte("a: {w: 20, z: null}\nl: [3]"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := renderString(t, dir, over)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `{"a":{"w":20,"x":1},"l":[3]}`) {
		t.Fatalf("merge: got %q", out)
	}
}

func TestEmptyOutputAndPartialsAreSkipped(t *testing.T) {
	out, err := renderString(t, chart(t, "", "{{- if false }}x{{ end }}\n", map[string]string{"templates/_p.tpl": "not rendered"}))
	if err != nil || out != "" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestKubeVersionConstraint(t *testing.T) {
	_, err := render(chart(t, "", "x", nil), nil, "r", "n", "v1.24.0", "", "")
	if err == nil || !strings.Contains(err.Error(), "incompatible with Kubernetes v1.24.0") {
		t.Fatalf("got %v", err)
	}
}
