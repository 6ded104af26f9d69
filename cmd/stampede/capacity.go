package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/harness"
	"github.com/stampede-sim/stampede/reports"
	"github.com/stampede-sim/stampede/reports/capacity"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func newCapacityCmd(g *globals) *cobra.Command {
	var (
		scenario, api, modes, out string
		nodes, targets            []int
		resultFiles               []string
		shards                    int
	)
	cmd := &cobra.Command{
		Use:   "capacity --scenario S --nodes 25,50,100,200 [--modes ...] [--results FILE...]",
		Short: "Sweep node counts, fit how each cost grows and extrapolate",
		Long: `Run the scenario at each node count (pods per node kept), or read earlier
results with --results, then fit how each cost grows with the cluster (watch
events delivered, API server CPU-seconds and peak latency, kvstore load,
agent memory per pod, time to converge, ...): a power law a*n^b by least
squares in log-log, or a linear model when it predicts better, with R^2 and
RMSE. Projects each cost to --targets nodes with 95 % prediction intervals,
states the measured range the fits are valid for, and flags the node count
at which each mode breaks an SLO. Writes capacity.md, capacity.html and
plots/capacity-*.png|svg under --out.

Exit status: 0 done, 1 a run or the rendering failed, 2 unusable input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			var ms []scenarios.Mode
			if modes != "" {
				for i, m := range strings.Split(modes, ",") {
					mode := scenarios.Mode(strings.TrimSpace(m))
					if !mode.Valid() {
						return &exitError{code: 2, err: fmt.Errorf("--modes[%d]: unknown mode %q (known: %v)", i, mode, scenarios.AllModes)}
					}
					ms = append(ms, mode)
				}
			}
			var rs []*results.Results
			name := scenario
			if len(resultFiles) > 0 {
				if rs, err = results.ReadResultsFiles(resultFiles); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--results: %w", err)}
				}
				name = strings.SplitN(rs[0].Run.Scenario, "@", 2)[0]
			} else {
				sc, err := scenarios.Resolve(scenario)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				if len(nodes) < 2 {
					return &exitError{code: 2, err: errors.New("--nodes: give two or more node counts (four or more for error estimates), or --results")}
				}
				name = sc.Name
				if out == "" {
					if out, err = defaultOut("capacity-", name); err != nil {
						return &exitError{code: 2, err: err}
					}
				}
				rs, err = capacity.Sweep(cmd.Context(), capacity.SweepConfig{
					Scenario: sc, Nodes: nodes, Modes: ms, Log: log,
					Run: harnessSweepRunner(api, out, shards, log, cmd.ErrOrStderr()),
				})
				if err != nil && len(rs) < 2 {
					return err
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "stampede capacity: sweep stopped early (%v); fitting the %d sizes measured\n", err, len(rs))
				}
			}
			if out == "" {
				if out, err = defaultOut("capacity-", name); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			rs = filterModes(rs, ms)
			rep, err := capacity.BuildCapacity(rs, targets)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res, err := reports.RenderCapacity(cmd.Context(), reports.CapacityConfig{Dir: out, Log: log}, rep)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "capacity model of %s from %d runs at %v nodes\n", rep.Scenario, len(rs), rep.Nodes)
			for _, f := range rep.Fits {
				if f.Limit == nil {
					continue
				}
				at := "does not break"
				if !math.IsNaN(f.BreaksAt) {
					at = fmt.Sprintf("breaks at %.0f nodes", f.BreaksAt)
				}
				fmt.Fprintf(w, "  %-8s %-24s %s: %s\n", f.Mode, f.Metric.Name, at, f.BreakNote)
			}
			fmt.Fprintf(w, "wrote %s\nwrote %s\nwrote %d plot files\n", res.Markdown, res.HTML, len(res.Plots))
			if len(res.FigureErrors) > 0 {
				return fmt.Errorf("%d capacity figures could not be drawn: %v", len(res.FigureErrors), errors.Join(res.FigureErrors...))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "relabel", "built-in scenario name or scenario file to sweep")
	f.IntSliceVar(&nodes, "nodes", []int{25, 50, 100, 200}, "node counts to run (pods per node kept)")
	f.StringVar(&modes, "modes", "", "comma-separated modes (default: the scenario's)")
	f.StringSliceVar(&resultFiles, "results", nil, "fit these results.json files instead of running (comma-separated or repeated)")
	f.IntSliceVar(&targets, "targets", capacity.DefaultCapacityTargets, "node counts to extrapolate to")
	f.StringVar(&out, "out", "", "output directory (default out/capacity-<scenario>-<timestamp>)")
	f.StringVar(&api, "api", "fake", "API server backend for the runs: fake, local, kind or kubeconfig=PATH")
	f.IntVar(&shards, "shards", 0, "agent processes per run (default: from the machine)")
	return cmd
}

// harnessSweepRunner runs one size of the sweep with the harness, each
// under out/nodes-<n>, on a fresh backend.
func harnessSweepRunner(api, out string, shards int, log *slog.Logger, progress io.Writer) capacity.SweepRunner {
	return func(ctx context.Context, sc *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error) {
		backend, err := harness.ParseBackend(api)
		if err != nil {
			return nil, err
		}
		return harness.RunAtNodes(ctx, harness.Config{
			Scenario: sc, Backend: backend, Modes: modes, Out: out, Shards: shards,
			Command: os.Args, Log: log, Progress: progress,
		}, nodes)
	}
}

// filterModes keeps only the given modes (all when none are given).
func filterModes(rs []*results.Results, modes []scenarios.Mode) []*results.Results {
	if len(modes) == 0 {
		return rs
	}
	keep := map[scenarios.Mode]bool{}
	for _, m := range modes {
		keep[m] = true
	}
	for _, r := range rs {
		var ms []results.ModeResult
		for _, m := range r.Modes {
			if keep[m.Mode] {
				ms = append(ms, m)
			}
		}
		r.Modes = ms
	}
	return rs
}
