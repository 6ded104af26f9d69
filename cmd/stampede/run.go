package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/harness"
	"github.com/stampede-sim/stampede/scenarios"
)

// defaultGrace is the harness's default time between SIGTERM and SIGKILL.
const defaultGrace = 10 * time.Second

func newRunCmd(g *globals) *cobra.Command {
	var (
		scenario, api, modes, out string
		shards, agentNice         int
		grace                     time.Duration
		noReport, force           bool
		executable, cpuProfile    string
		installCRDs               bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a scenario in every mode and measure it",
		Long: `Run a scenario in each mode on fresh processes: the API server backend,
the kvstore (kvstore mode), the control plane and the agent shards; execute
the scenario's timeline; sample CPU and memory, scrape metrics and probe the
API server once per second. Writes results.json (incrementally), the
processes' logs and a summary under --out, and prints a summary table.
Ctrl-C stops every process and keeps what was measured, marked incomplete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if grace < 0 {
				return fmt.Errorf("--grace: must be 0 (the default, %s) or more, got %s", defaultGrace, grace)
			}
			sc, err := scenarios.Resolve(scenario)
			if err != nil {
				return err
			}
			backend, err := harness.ParseBackendOptions(api, harness.BackendOptions{InstallCRDs: installCRDs})
			if err != nil {
				return err
			}
			var ms []scenarios.Mode
			if modes != "" {
				for _, m := range strings.Split(modes, ",") {
					ms = append(ms, scenarios.Mode(strings.TrimSpace(m)))
				}
				// A preset the scenario does not list is added to it.
				if err := sc.SelectModes(ms); err != nil {
					return fmt.Errorf("--modes: %w", err)
				}
			}
			if out == "" {
				if out, err = defaultOut("", sc.Name); err != nil {
					return err
				}
			}
			if err := checkOutEmpty(out, force); err != nil {
				return err
			}
			if cpuProfile != "" {
				// The harness's own CPU profile: what the orchestrator,
				// the probe, the sampling and the scrapes cost.
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				if err := pprof.StartCPUProfile(pf); err != nil {
					_ = pf.Close()
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				defer func() {
					pprof.StopCPUProfile()
					_ = pf.Close()
				}()
			}
			stderr := cmd.ErrOrStderr()
			live := false
			if f, ok := stderr.(*os.File); ok {
				live = isatty.IsTerminal(f.Fd())
			}
			res, runErr := harness.Run(cmd.Context(), harness.Config{
				Scenario: sc, Backend: backend, Modes: ms, Out: out, Shards: shards, AgentNice: agentNice,
				Command: os.Args, Log: log, Progress: stderr, Live: live, Grace: grace, NoReport: noReport, Executable: executable,
			})
			if res != nil {
				fmt.Fprintln(cmd.OutOrStdout())
				_ = harness.WriteSummaryTable(cmd.OutOrStdout(), res)
				fmt.Fprintf(cmd.OutOrStdout(), "\nresults: %s\nreport:  %s\n", filepath.Join(out, "results.json"), filepath.Join(out, "report.html"))
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "relabel", "built-in scenario name or scenario file")
	f.StringVar(&api, "api", "fake", "API server backend: fake, local, kind or kubeconfig=PATH")
	f.StringVar(&modes, "modes", "", "comma-separated modes to run: names from the scenario or presets (crd, ces, kvstore, operator, xds, ces-slim, mesh); default: the scenario's")
	f.StringVar(&out, "out", "", "output directory (default out/<scenario>-<timestamp>); must not exist or be empty unless --force")
	f.BoolVar(&force, "force", false, "write into an existing, non-empty --out directory (files of an earlier run that this one does not rewrite stay beside the new ones)")
	f.IntVar(&shards, "shards", 0, "agent processes (default: about 250 agents each, at most 2x the cores)")
	f.IntVar(&agentNice, "agent-nice", harness.AgentNiceAuto, fmt.Sprintf("nice value of the agent shards in every mode (0-19; 0: the same priority as the API server, etcd and the control plane); default: %d in kvstore mode, 0 in the others", harness.DefaultAgentNice))
	f.BoolVar(&noReport, "no-report", false, "do not render report.md, report.html and plots at the end")
	f.BoolVar(&installCRDs, strings.TrimPrefix(harness.InstallCRDsFlag, "--"), false, "kubeconfig backend: install Stampede's cilium.io CRDs if the cluster lacks them (removed at the end)")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write the harness's own CPU profile (pprof) to this file")
	f.StringVar(&executable, "executable", "", "stampede binary to run the components with (default: this one)")
	_ = f.MarkHidden("executable")
	f.DurationVar(&grace, "grace", defaultGrace, "time children get between SIGTERM and SIGKILL (0: the default)")
	return cmd
}

// defaultOut is out/<prefix><name>-<time>. The name comes from a scenario
// (validated to be one path element) or a results file (not validated), so
// it is checked here too: a default must never leave out/.
func defaultOut(prefix, name string) (string, error) {
	elem := prefix + name + "-" + time.Now().UTC().Format("20060102-150405")
	if !filepath.IsLocal(elem) || strings.ContainsAny(elem, `/\`) {
		return "", fmt.Errorf("scenario name %q cannot name a directory under out/; give --out", name)
	}
	return filepath.Join("out", elem), nil
}

// checkOutEmpty refuses an --out directory that already holds files: a
// run writes results.json, logs and plots there, and mixing them with an
// earlier run's would make both unreadable. force lets it through.
func checkOutEmpty(out string, force bool) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--out: %w", err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("--out: %s already holds %d entries (an earlier run?); choose another directory or pass --force", out, len(entries))
	}
	return nil
}
