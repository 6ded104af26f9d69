package capacity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// SweepRunner runs a scenario resized to a node count in the given modes
// and returns its results. The command layer passes one built on the
// harness; this package does not import it.
type SweepRunner func(ctx context.Context, sc *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error)

// SweepConfig configures Sweep.
type SweepConfig struct {
	Scenario *scenarios.Scenario
	Nodes    []int
	Modes    []scenarios.Mode
	// APICores, when set, are API server sizes: every node count runs
	// once per size, with the scenario's api.capacity.cores set to it (the
	// fake API server's capacity model). Empty runs the scenario as it is.
	APICores []float64
	// APIProfile is the calibration profile for APICores ("" keeps the
	// scenario's, or the default).
	APIProfile string
	Run        SweepRunner
	Log        *slog.Logger
}

// Sweep runs the scenario at every node count, smallest first, once per
// API server size (smallest first) when APICores are given. It returns
// the results it got so far with the error of the first run that failed
// outright (a run that returns results with failed modes continues).
func Sweep(ctx context.Context, cfg SweepConfig) ([]*results.Results, error) {
	if cfg.Scenario == nil {
		return nil, errors.New("sweep: no scenario")
	}
	if cfg.Run == nil {
		return nil, errors.New("sweep: no runner")
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("sweep: no node counts")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	nodes := slices.Sorted(slices.Values(cfg.Nodes))
	for _, n := range nodes {
		if n <= 0 {
			return nil, fmt.Errorf("sweep: node count %d must be positive", n)
		}
	}
	scs := []*scenarios.Scenario{cfg.Scenario}
	if len(cfg.APICores) > 0 {
		scs = nil
		for _, c := range slices.Sorted(slices.Values(cfg.APICores)) {
			if !(c > 0) || math.IsInf(c, 0) {
				return nil, fmt.Errorf("sweep: API server size %g cores must be a finite number above 0", c)
			}
			scs = append(scs, withAPICores(cfg.Scenario, c, cfg.APIProfile))
		}
	}
	var out []*results.Results
	for _, sc := range scs {
		api := "as the scenario says"
		if sc.API.Capacity != nil {
			api = fmt.Sprintf("%g cores", sc.API.Capacity.Cores)
		}
		for _, n := range nodes {
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("sweep: %w", err)
			}
			cfg.Log.Info("capacity sweep: running", "scenario", sc.Name, "nodes", n, "api", api)
			r, err := cfg.Run(ctx, sc, n, cfg.Modes)
			if r != nil {
				out = append(out, r)
			}
			if err != nil {
				if r == nil || ctx.Err() != nil {
					return out, fmt.Errorf("sweep at %d nodes, API server %s: %w", n, api, err)
				}
				cfg.Log.Warn("capacity sweep: run had errors; using what it measured", "nodes", n, "api", api, "err", err)
			}
		}
	}
	return out, nil
}

// withAPICores is a copy of s whose fake API server has the capacity of a
// kube-apiserver of cores cores; profile "" keeps the scenario's profile.
func withAPICores(s *scenarios.Scenario, cores float64, profile string) *scenarios.Scenario {
	c := *s
	capy := scenarios.Capacity{Cores: cores, Profile: profile}
	if profile == "" && s.API.Capacity != nil {
		capy.Profile = s.API.Capacity.Profile
	}
	c.API.Capacity = &capy
	return &c
}

// DefaultCapacityTargets are the node counts capacity reports extrapolate
// to.
var DefaultCapacityTargets = []int{1000, 5000, 10000, 50000}

// Options configure BuildCapacity.
type Options struct {
	// Targets are the node counts to project to (default
	// DefaultCapacityTargets).
	Targets []int
	// MaxExtrapolation is how many times the largest measured node count a
	// breaking point may lie beyond it and still be stated (default
	// DefaultMaxExtrapolation; at least 1).
	MaxExtrapolation float64
}

func (o *Options) defaults() error {
	if len(o.Targets) == 0 {
		o.Targets = DefaultCapacityTargets
	}
	if o.MaxExtrapolation == 0 {
		o.MaxExtrapolation = DefaultMaxExtrapolation
	}
	if !(o.MaxExtrapolation >= 1) || math.IsInf(o.MaxExtrapolation, 0) {
		return fmt.Errorf("max extrapolation %g: must be a finite number of at least 1", o.MaxExtrapolation)
	}
	for _, t := range o.Targets {
		if t <= 0 {
			return fmt.Errorf("target %d nodes: must be positive", t)
		}
	}
	o.Targets = slices.Sorted(slices.Values(o.Targets))
	return nil
}
