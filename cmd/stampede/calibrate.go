package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/harness/calibrate"
	"github.com/stampede-sim/stampede/internal/capacity"
)

func newCalibrateCmd(g *globals) *cobra.Command {
	var (
		out, name, dir, kubeAPIServer, executable string
		refit, profile                            string
		short, validate                           bool
		vcfg                                      calibrate.ValidateConfig
	)
	cmd := &cobra.Command{
		Use:   "calibrate",
		Short: "Measure what kube-apiserver and etcd spend per request and watch event, for the fake's capacity model",
		Long: `Start kube-apiserver (built by make tools) with its etcd on this machine,
send a fixed, seeded workload (creates, gets, lists of 10/100/1000 objects,
updates, patches and deletes of pods, namespaces, CiliumIdentities and
CiliumEndpoints in two object sizes, and watch fan-out to 1-200 watchers),
read the CPU-seconds both processes spend in every phase from /proc (less
their idle baseline), fit the capacity model's cost coefficients by least
squares, and write the profile as YAML (--profile-out, default stdout). A progress
line goes to stderr; a table of the coefficients ends the run.

CPU-seconds, not wall time, are measured, so other load on the machine
changes the figures little; a core of capacity is a core of this machine.

With --validate, then run relabel-small (crd and kvstore mode, agents as
Cilium 1.17, whose identity allocation has no jitter) twice: on
kube-apiserver and etcd confined to --cores cores, and on the fake API
server with a capacity of --cores cores and the profile just measured;
print both side by side and fail if they disagree beyond the tolerances.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			if refit != "" {
				return refitPhases(cmd, refit)
			}
			live := false
			if f, ok := stderr.(*os.File); ok {
				live = isatty.IsTerminal(f.Fd())
			}
			cfg := calibrate.Config{KubeAPIServer: kubeAPIServer, Executable: executable, Dir: dir, Name: name,
				Progress: stderr, Live: live, Log: log}
			if short {
				cfg.Workload = calibrate.ShortWorkload()
			}
			if _, err := calibrate.KubeAPIServer(kubeAPIServer); err != nil {
				return err
			}
			if profile != "" {
				if !validate {
					return fmt.Errorf("--profile %s: only with --validate", profile)
				}
				p, err := capacity.Load(profile)
				if err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
				vcfg.Profile = p
				return runValidate(cmd, vcfg, kubeAPIServer, executable, dir, live, log)
			}
			res, err := calibrate.Run(cmd.Context(), cfg)
			if res != nil && res.Model != nil {
				fmt.Fprintf(stderr, "\ncalibrated kube-apiserver %s + etcd %s in %v: %d phases, idle baseline %.3f cores subtracted (%.3f before, %.3f after)\n",
					res.Profile.KubeAPIServerVersion, res.Profile.EtcdVersion, res.Wall.Round(1e9), len(res.Phases), res.Baseline, res.IdleBefore, res.IdleAfter)
				_ = calibrate.WriteTable(stderr, res.Model)
			}
			if err != nil {
				return err
			}
			if err := writeProfile(cmd, out, res); err != nil {
				return err
			}
			if !validate {
				return nil
			}
			vcfg.Profile = res.Profile
			return runValidate(cmd, vcfg, cfg.KubeAPIServer, executable, dir, live, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "profile-out", "", "write the profile to this file (default: stdout)")
	f.StringVar(&name, "name", "", "the profile's name (default: kube-apiserver-<version>)")
	f.StringVar(&dir, "dir", "", "keep the backend's logs and the validation runs here (default: a temporary directory, removed)")
	f.StringVar(&kubeAPIServer, "kube-apiserver", "", "kube-apiserver binary (default: the one make tools builds)")
	f.BoolVar(&short, "short", false, "a small workload (about a minute; coarser coefficients)")
	f.BoolVar(&validate, "validate", false, "then compare a confined kube-apiserver with the capacity-modelled fake on relabel-small")
	f.Float64Var(&vcfg.Cores, "cores", 2, "--validate: cores for kube-apiserver+etcd and capacity of the fake")
	f.StringVar(&vcfg.Scenario, "scenario", "relabel-small", "--validate: built-in scenario name or scenario file to run")
	f.IntVar(&vcfg.Nodes, "nodes", 0, "--validate: resize the scenario to this many nodes (default: as written)")
	f.StringVar(&vcfg.Cilium, "cilium", calibrate.DefaultValidationRelease, "--validate: Cilium release the agents follow (\"\" keeps the scenario's; from 1.18 the identity jitter sets converge p99 on both servers alike)")
	f.StringSliceVar(&vcfg.Modes, "modes", []string{"crd", "kvstore"}, "--validate: modes to compare")
	f.StringVar(&executable, "executable", "", "stampede binary to run the components with (default: this one)")
	_ = f.MarkHidden("executable")
	f.StringVar(&profile, "profile", "", "--validate: validate this profile file instead of calibrating first")
	f.StringVar(&refit, "refit", "", "fit the phases.json of an earlier run (kept by --dir) again and print the table; measures nothing")
	return cmd
}

func refitPhases(cmd *cobra.Command, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--refit: %w", err)
	}
	var phases []calibrate.Phase
	if err := json.Unmarshal(data, &phases); err != nil {
		return fmt.Errorf("--refit %s: %w", path, err)
	}
	m, err := calibrate.FitModel(phases)
	if err != nil {
		return fmt.Errorf("--refit %s: %w", path, err)
	}
	return calibrate.WriteTable(cmd.OutOrStdout(), m)
}

func writeProfile(cmd *cobra.Command, out string, res *calibrate.Result) error {
	if out == "" {
		return res.Profile.Write(cmd.OutOrStdout())
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("--profile-out: %w", err)
	}
	if err := res.Profile.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("--profile-out %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--profile-out %s: %w", out, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "profile written to %s\n", out)
	return nil
}

func runValidate(cmd *cobra.Command, vcfg calibrate.ValidateConfig, kubeAPIServer, executable, dir string, live bool, log *slog.Logger) error {
	vcfg.KubeAPIServer = kubeAPIServer
	vcfg.Executable = executable
	vcfg.Progress, vcfg.Live, vcfg.Log = cmd.ErrOrStderr(), live, log
	if vcfg.Out == "" && dir != "" {
		vcfg.Out = dir
	}
	v, err := calibrate.Validate(cmd.Context(), vcfg)
	if v != nil {
		fmt.Fprintln(cmd.OutOrStdout())
		_ = v.WriteTable(cmd.OutOrStdout())
	}
	if err != nil {
		return err
	}
	if !v.Passed() {
		return &exitError{code: 1, err: fmt.Errorf("calibrate --validate: %d of %d checks failed", v.Failed(), v.Checks())}
	}
	return nil
}
