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

// TestSweepDir: runs at different API server sizes land apart; without a
// capacity the layout is as before.
func TestSweepDir(t *testing.T) {
	base, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	base.API.Capacity = nil
	if got := SweepDir("out", base, 20); got != "out/nodes-20" {
		t.Errorf("no capacity: %s", got)
	}
	c := *base
	c.API.Capacity = &scenarios.Capacity{Cores: 2.5}
	if got := SweepDir("out", &c, 20); got != "out/api-2.5-cores/nodes-20" {
		t.Errorf("2.5 cores: %s", got)
	}
	// ScaleScenario keeps the capacity the sweep set.
	c.API.Capacity.Profile = "../internal/capacity/testdata/placeholder.yaml"
	s, err := ScaleScenario(&c, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s.API.Capacity == nil || s.API.Capacity.Cores != 2.5 {
		t.Errorf("scaled scenario's capacity: %+v", s.API.Capacity)
	}
}
