package harness

import (
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/scenarios"
)

func TestScaleScenario(t *testing.T) {
	base, err := scenarios.Builtin("relabel-small") // 20 nodes, 40 replicas
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		nodes, replicas int
	}{
		{20, 40},
		{40, 80},
		{5, 10},
		{1, 2},
	}
	for _, tt := range tests {
		s, err := ScaleScenario(base, tt.nodes)
		if err != nil {
			t.Fatalf("%d nodes: %v", tt.nodes, err)
		}
		if s.Cluster.Nodes != tt.nodes || s.Cluster.Workloads.Replicas != tt.replicas {
			t.Errorf("%d nodes: got %d nodes, %d replicas; want %d replicas", tt.nodes, s.Cluster.Nodes, s.Cluster.Workloads.Replicas, tt.replicas)
		}
		if !strings.HasPrefix(s.Name, "relabel-small@") {
			t.Errorf("name %q", s.Name)
		}
	}
	if base.Cluster.Nodes != 20 {
		t.Error("ScaleScenario changed its input")
	}
	if _, err := ScaleScenario(base, 0); err == nil {
		t.Error("0 nodes accepted")
	}
}
