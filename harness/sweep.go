package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// ScaleScenario returns a copy of s resized to nodes, keeping the pods per
// node (so replicas per deployment scale with the node count, at least 1)
// and every other setting. The name gets a "@<nodes>" suffix.
func ScaleScenario(s *scenarios.Scenario, nodes int) (*scenarios.Scenario, error) {
	if nodes <= 0 {
		return nil, fmt.Errorf("scale scenario %s: nodes must be positive, got %d", s.Name, nodes)
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("scale scenario %s: %w", s.Name, err)
	}
	var c scenarios.Scenario
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("scale scenario %s: %w", s.Name, err)
	}
	w := &c.Cluster.Workloads
	if s.Cluster.Nodes > 0 {
		r := int(float64(w.Replicas)*float64(nodes)/float64(s.Cluster.Nodes) + 0.5)
		w.Replicas = max(r, 1)
	}
	c.Cluster.Nodes = nodes
	c.Name = fmt.Sprintf("%s@%d", s.Name, nodes)
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("scale scenario %s to %d nodes: %w", s.Name, nodes, err)
	}
	return &c, nil
}

// RunAtNodes runs cfg.Scenario resized to nodes (see ScaleScenario) in
// cfg.Modes, writing under cfg.Out/nodes-<n> (cfg.Out/api-<c>-cores/nodes-<n>
// when the scenario gives the fake API server a capacity of c cores, so
// that a sweep over API server sizes keeps its runs apart), and returns
// its results. It is the building block of capacity sweeps.
func RunAtNodes(ctx context.Context, cfg Config, nodes int) (*results.Results, error) {
	if cfg.Scenario == nil {
		return nil, fmt.Errorf("run at %d nodes: no scenario", nodes)
	}
	sc, err := ScaleScenario(cfg.Scenario, nodes)
	if err != nil {
		return nil, err
	}
	cfg.Scenario = sc
	cfg.Out = SweepDir(cfg.Out, sc, nodes)
	if cfg.Shards > 0 {
		cfg.Shards = min(cfg.Shards, nodes)
	}
	return Run(ctx, cfg)
}

// SweepDir is where RunAtNodes writes the run of sc at nodes under out.
func SweepDir(out string, sc *scenarios.Scenario, nodes int) string {
	dir := fmt.Sprintf("nodes-%d", nodes)
	if c := sc.API.Capacity; c != nil {
		return filepath.Join(out, "api-"+strconv.FormatFloat(c.Cores, 'g', -1, 64)+"-cores", dir)
	}
	return filepath.Join(out, dir)
}
