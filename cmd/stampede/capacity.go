package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
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
		apiCores, apiProfile      string
		nodes, targets            []int
		resultFiles               []string
		shards                    int
		reach                     float64
	)
	cmd := &cobra.Command{
		Use:   "capacity --scenario S --nodes 25,50,100,200 [--api-cores 2,4,8,16] [--modes ...] [--results FILE...]",
		Short: "Sweep node counts, fit how each cost grows and extrapolate",
		Long: `Run the scenario at each node count (pods per node kept), or read earlier
results with --results, then fit how each cost grows with the cluster (watch
events delivered, API server CPU-seconds and peak latency, kvstore load,
agent memory per pod, time to converge, ...): a power law a*n^b by least
squares in log-log, or a linear model when it predicts better, with R^2 and
RMSE. Projects each cost to --targets nodes with 95 % prediction intervals
and states the measured range the fits are valid for.

--api-cores runs every node count once per API server size: the fake API
server with the capacity model of a kube-apiserver (and etcd) of that many
cores (api.capacity.cores). The report then answers, per mode and API server
size, at which node count the relabel breaks an SLO. A breaking point is
stated only from a capacity-modelled fake or a real kube-apiserver (never
the fake without a capacity model, whose latency is the simulator's), only
for modes whose agents talk to the API server (not xds), and only within
--max-extrapolation times the largest measured node count, with its 95 %
interval; otherwise the report says it lies beyond what the data supports
and which runs would settle it. Writes capacity.md, capacity.html and
plots/capacity-*.png|svg under --out.

Exit status: 0 done, 1 a run or the rendering failed, 2 unusable input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ms, err := parseCapacityModes(modes)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			cores, err := parseAPICores(apiCores)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := checkCapacityFlags(cmd, cores, api, len(resultFiles) > 0, reach); err != nil {
				return &exitError{code: 2, err: err}
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
					Scenario: sc, Nodes: nodes, Modes: ms, APICores: cores, APIProfile: apiProfile, Log: log,
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
			rep, err := capacity.BuildCapacity(rs, capacity.Options{Targets: targets, MaxExtrapolation: reach})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return renderCapacity(cmd, rep, len(rs), out, log)
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
	f.StringVar(&apiCores, "api-cores", "", "comma-separated API server sizes in cores: run every node count on the fake API server with the capacity of a kube-apiserver of each size")
	f.StringVar(&apiProfile, "api-profile", "", "calibration profile for --api-cores: a shipped name or a file (default: the scenario's, else the shipped default)")
	f.Float64Var(&reach, "max-extrapolation", capacity.DefaultMaxExtrapolation, "state breaking points only up to this many times the largest measured node count")
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

// parseCapacityModes parses --modes (empty: the scenario's).
func parseCapacityModes(modes string) ([]scenarios.Mode, error) {
	if modes == "" {
		return nil, nil
	}
	var ms []scenarios.Mode
	for i, m := range strings.Split(modes, ",") {
		mode := scenarios.Mode(strings.TrimSpace(m))
		if !mode.ValidName() {
			return nil, fmt.Errorf("--modes[%d]: invalid mode name %q (a preset, %v, or one of the scenario's modes)", i, mode, scenarios.PresetNames())
		}
		ms = append(ms, mode)
	}
	return ms, nil
}

// renderCapacity writes the report under out and prints the verdicts.
func renderCapacity(cmd *cobra.Command, rep *capacity.CapacityReport, runs int, out string, log *slog.Logger) error {
	res, err := reports.RenderCapacity(cmd.Context(), reports.CapacityConfig{Dir: out, Log: log}, rep)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "capacity model of %s from %d runs at %v nodes\n", rep.Scenario, runs, rep.Nodes)
	printVerdicts(w, rep)
	fmt.Fprintf(w, "wrote %s\nwrote %s\nwrote %d plot files\n", res.Markdown, res.HTML, len(res.Plots))
	if len(res.FigureErrors) > 0 {
		return fmt.Errorf("%d capacity figures could not be drawn: %v", len(res.FigureErrors), errors.Join(res.FigureErrors...))
	}
	return nil
}

// parseAPICores parses --api-cores: comma-separated API server sizes in
// cores, each a finite number above 0, none twice.
func parseAPICores(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		v, err := strconv.ParseFloat(part, 64)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--api-cores[%d]: %q is not a number of cores", i, part)
		case math.IsNaN(v) || math.IsInf(v, 0):
			return nil, fmt.Errorf("--api-cores[%d]: %q must be a finite number of cores", i, part)
		case v <= 0:
			return nil, fmt.Errorf("--api-cores[%d]: %s must be above 0 cores", i, part)
		case slices.Contains(out, v):
			return nil, fmt.Errorf("--api-cores[%d]: %s cores given twice", i, part)
		}
		out = append(out, v)
	}
	return out, nil
}

// checkCapacityFlags refuses flag combinations that cannot mean anything.
func checkCapacityFlags(cmd *cobra.Command, cores []float64, api string, fromResults bool, reach float64) error {
	if !(reach >= 1) || math.IsInf(reach, 0) {
		return fmt.Errorf("--max-extrapolation: %g must be a finite number of at least 1", reach)
	}
	if len(cores) == 0 {
		if cmd.Flags().Changed("api-profile") {
			return errors.New("--api-profile: only with --api-cores")
		}
		return nil
	}
	if fromResults {
		return errors.New("--api-cores: sizes a sweep's runs; with --results the API server of each run is read from its results")
	}
	if api != string(scenarios.BackendFake) {
		return fmt.Errorf("--api-cores: the capacity model is the fake API server's; it needs --api fake, not %q", api)
	}
	return nil
}

// printVerdicts prints, per mode and API server, the breaking point or why
// there is none.
func printVerdicts(w io.Writer, rep *capacity.CapacityReport) {
	for _, v := range rep.Verdicts {
		b := v.Break
		at := orDash(v.SLO) + " " + string(b.Kind)
		if b.Stated() {
			hi := "beyond"
			if !math.IsInf(b.Hi, 1) {
				hi = fmt.Sprintf("%.0f", b.Hi)
			}
			at = fmt.Sprintf("breaks %s at %.0f nodes (%.0f to %s)", v.SLO, b.Nodes, b.Lo, hi)
			if b.Lo == 0 {
				at = fmt.Sprintf("breaks %s at %.0f nodes or fewer", v.SLO, b.Nodes)
			}
		}
		fmt.Fprintf(w, "  %-8s %-18s %s: %s\n", v.Mode, v.API.Label(), at, b.Reason)
		if len(b.Settle) > 0 {
			fmt.Fprintf(w, "  %-8s %-18s to settle it, also run --nodes %s\n", "", "", joinInts(b.Settle))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}
