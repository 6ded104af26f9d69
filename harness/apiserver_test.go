package harness

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestRunRecordsAPIServer: results.json says which API server the figures
// stand for as soon as a mode starts, even when the backend then fails or
// is skipped.
func TestRunRecordsAPIServer(t *testing.T) {
	placeholder := "../internal/capacity/testdata/placeholder.yaml"
	tests := []struct {
		name    string
		yaml    string
		backend Backend
		want    string
	}{
		{"fake without capacity", "steps: [{setup: {}}]", &FakeBackend{},
			"fake without capacity model — the simulator's own latency, not a kube-apiserver's"},
		{"fake with capacity", "api: {capacity: {cores: 4, profile: " + placeholder + "}}\nsteps: [{setup: {}}]", &FakeBackend{},
			"fake with capacity 4 cores of placeholder (profile test-placeholder, measured 2026-12-03 on a 2-core machine) — modelled kube-apiserver v1.36.3 + etcd"},
		{"kind, skipped", "steps: [{setup: {}}]", unavailableBackend{name: "kind", reason: "no Docker here"},
			"kube-apiserver (version unknown) + etcd (kind backend)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := smallScenario(t, tt.yaml)
			res, _ := Run(context.Background(), Config{
				Scenario: sc, Backend: tt.backend, Modes: []scenarios.Mode{scenarios.ModeCRD},
				Out: t.TempDir(), Executable: "/bin/false", NoReport: true, Grace: time.Second,
			})
			if res == nil || res.Run.APIServer == nil {
				t.Fatalf("no run.apiServer in %+v", res)
			}
			if got := res.Run.APIServer.Describe(); got != tt.want {
				t.Errorf("apiServer:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestRunAPIServerVersionFromFacts: a started kube-apiserver's version
// fact is what the record names.
func TestRunAPIServerVersionFromFacts(t *testing.T) {
	a, err := apiServerRecord("local", nil, map[string]string{"kubernetes.version": "v1.36.3"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Model != results.ModelKubeAPIServer || a.KubernetesVersion != "v1.36.3" || a.Capacity != nil {
		t.Errorf("local: %+v", a)
	}
	sc := smallScenario(t, "api: {capacity: {cores: 4, profile: ../internal/capacity/testdata/placeholder.yaml}}\nsteps: [{setup: {}}]")
	a, err = apiServerRecord("local", sc, nil)
	if err != nil || a.Capacity != nil {
		t.Errorf("local backend with a scenario capacity: %+v, %v (the capacity is the fake's only)", a, err)
	}
}

// TestSummaryTableNamesAPIServer: the table `stampede run` prints at the end
// says which API server its API latencies stand for.
func TestSummaryTableNamesAPIServer(t *testing.T) {
	r := &results.Results{Run: results.Run{Backend: results.Backend{Name: "fake"}, APIServer: &results.APIServer{Backend: "fake", Model: results.ModelNone}},
		Modes: []results.ModeResult{{Mode: scenarios.ModeCRD, Status: results.StatusOK}}}
	var buf bytes.Buffer
	if err := WriteSummaryTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	want := "API server: fake without capacity model — the simulator's own latency, not a kube-apiserver's\n"
	if !strings.HasSuffix(buf.String(), want) {
		t.Errorf("table does not end with %q:\n%s", want, buf.String())
	}
	if !strings.Contains(buf.String(), "sim. agent CPU and RSS: the simulator's cost") {
		t.Errorf("table does not say the agents' CPU and RSS are the simulator's cost:\n%s", buf.String())
	}
}
