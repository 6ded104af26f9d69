package results_test

import (
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/results"
)

func capacityServer(cores float64, profile string) results.APIServer {
	return results.APIServer{Backend: "fake", Model: results.ModelCapacity, Capacity: &results.APICapacity{
		Cores: cores, Profile: profile, KubeAPIServerVersion: "v1.36.3",
		Machine:    results.CalibrationMachine{CPUModel: "Test CPU", Cores: 2},
		MeasuredAt: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC),
	}}
}

func TestAPIServerDescribe(t *testing.T) {
	tests := []struct {
		a    results.APIServer
		want string
	}{
		{capacityServer(8, "kube-apiserver-v1.36.3"), "fake with capacity 8 cores of Test CPU (profile kube-apiserver-v1.36.3, measured 2026-12-03 on a 2-core machine) — modelled kube-apiserver v1.36.3 + etcd"},
		{capacityServer(0.5, "mine"), "fake with capacity 0.5 cores of Test CPU (profile mine, measured 2026-12-03 on a 2-core machine) — modelled kube-apiserver v1.36.3 + etcd"},
		{results.APIServer{Backend: "fake", Model: results.ModelNone}, "fake without capacity model — the simulator's own latency, not a kube-apiserver's"},
		{results.APIServer{Backend: "local", Model: results.ModelKubeAPIServer, KubernetesVersion: "v1.36.3"}, "kube-apiserver v1.36.3 + etcd (local backend)"},
		{results.APIServer{Backend: "kubeconfig", Model: results.ModelKubeAPIServer}, "kube-apiserver (version unknown) + etcd (kubeconfig backend)"},
	}
	for _, tt := range tests {
		if got := tt.a.Describe(); got != tt.want {
			t.Errorf("Describe:\n got %q\nwant %q", got, tt.want)
		}
	}
}

func TestAPIServerComparable(t *testing.T) {
	none := results.APIServer{Backend: "fake", Model: results.ModelNone}
	local := results.APIServer{Backend: "local", Model: results.ModelKubeAPIServer, KubernetesVersion: "v1.36.3"}
	remeasured := capacityServer(8, "p")
	remeasured.Capacity.MeasuredAt = remeasured.Capacity.MeasuredAt.Add(time.Hour)
	tests := []struct {
		name string
		a, b results.APIServer
		want bool
	}{
		{"same capacity", capacityServer(8, "p"), capacityServer(8, "p"), true},
		{"no model on both", none, none, true},
		{"same real server", local, local, true},
		{"other cores", capacityServer(8, "p"), capacityServer(4, "p"), false},
		{"other profile", capacityServer(8, "p"), capacityServer(8, "q"), false},
		{"profile measured again", capacityServer(8, "p"), remeasured, false},
		{"model against none", capacityServer(8, "p"), none, false},
		{"fake against local", none, local, false},
		{"local against kind", local, results.APIServer{Backend: "kind", Model: results.ModelKubeAPIServer, KubernetesVersion: "v1.36.3"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Comparable(tt.b); got != tt.want {
			t.Errorf("%s: Comparable = %v, want %v", tt.name, got, tt.want)
		}
		if got := tt.b.Comparable(tt.a); got != tt.want {
			t.Errorf("%s (swapped): Comparable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAPIServerOfOldResults: results written before run.apiServer existed
// are read as what their backend was then.
func TestAPIServerOfOldResults(t *testing.T) {
	fake := &results.Results{Run: results.Run{Backend: results.Backend{Name: "fake"}}}
	if got := results.APIServerOf(fake); got.Model != results.ModelNone || got.Backend != "fake" {
		t.Errorf("fake without apiServer: got %+v, want model none", got)
	}
	local := &results.Results{Run: results.Run{Backend: results.Backend{Name: "local", Facts: map[string]string{"kubernetes.version": "v1.36.3"}}}}
	if got := results.APIServerOf(local); got.Model != results.ModelKubeAPIServer || got.KubernetesVersion != "v1.36.3" {
		t.Errorf("local without apiServer: got %+v, want kube-apiserver v1.36.3", got)
	}
	rec := capacityServer(8, "p")
	with := &results.Results{Run: results.Run{Backend: results.Backend{Name: "fake"}, APIServer: &rec}}
	if got := results.APIServerOf(with); !got.Comparable(rec) {
		t.Errorf("recorded apiServer: got %+v, want %+v", got, rec)
	}
}
