package calibrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/stampede-sim/stampede/harness"
	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// Tolerances of validation: the fake with capacity C must agree with
// kube-apiserver and etcd confined to C cores within these factors.
const (
	CPUTolerance         = 1.5
	LatencyTolerance     = 2.0
	IdentitiesTolerance  = 2.0
	ConvergenceTolerance = 2.0
)

// DefaultValidationRelease is the Cilium release validation runs the
// agents as. From 1.18 an agent waits up to identityMaxJitter (30 s) before
// it allocates an identity for a relabelled endpoint, so the converge p99
// of both runs is the jitter's, equal by construction, and the identity
// race is spread thin; 1.17's agents allocate at once, so convergence and
// duplicate identities depend on how fast the server answers, which is
// what validation compares.
const DefaultValidationRelease = "1.17"

// ValidateConfig configures a validation.
type ValidateConfig struct {
	// Profile is the calibration to give the fake (required).
	Profile *capacity.Profile
	// Cores is the size of both API servers.
	Cores float64
	// Scenario is a built-in name or a file (default relabel-small); Nodes,
	// when positive, resizes it (harness.ScaleScenario).
	Scenario string
	Nodes    int
	// Cilium is the release the agents follow (default
	// DefaultValidationRelease); "" as written keeps the scenario's.
	Cilium string
	// Modes to compare (default crd and kvstore).
	Modes []string
	// Shards is the number of agent processes (0: the harness's default).
	Shards int
	// KubeAPIServer and Executable as in Config.
	KubeAPIServer string
	Executable    string
	// Out receives both runs (local/ and fake/) and the profile; default a
	// temporary directory, removed.
	Out      string
	Progress io.Writer
	Live     bool
	Log      *slog.Logger
}

func (c *ValidateConfig) defaults() (*scenarios.Scenario, []scenarios.Mode, error) {
	if c.Profile == nil {
		return nil, nil, errors.New("validate: no profile")
	}
	if !(c.Cores > 0) || math.IsInf(c.Cores, 0) {
		return nil, nil, fmt.Errorf("validate: --cores must be a positive finite number, got %v", c.Cores)
	}
	bin, err := KubeAPIServer(c.KubeAPIServer)
	if err != nil {
		return nil, nil, err
	}
	c.KubeAPIServer = bin
	if c.Scenario == "" {
		c.Scenario = "relabel-small"
	}
	if len(c.Modes) == 0 {
		c.Modes = []string{string(scenarios.ModeCRD), string(scenarios.ModeKVStore)}
	}
	var sc *scenarios.Scenario
	if c.Cilium == "" {
		sc, err = scenarios.Resolve(c.Scenario)
	} else {
		sc, err = scenarios.ResolveWithRelease(c.Scenario, c.Cilium, c.Modes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("validate: --scenario %s (--cilium %q): %w", c.Scenario, c.Cilium, err)
	}
	if c.Nodes > 0 {
		if sc, err = harness.ScaleScenario(sc, c.Nodes); err != nil {
			return nil, nil, fmt.Errorf("validate: --nodes: %w", err)
		}
	}
	var modes []scenarios.Mode
	for i, m := range c.Modes {
		mode := scenarios.Mode(m)
		if !mode.IsPreset() || mode == scenarios.ModeXDS || mode == scenarios.ModeCESSlim || mode == scenarios.ModeMesh {
			return nil, nil, fmt.Errorf("validate: --modes[%d]: %q is not a mode whose agents talk to the API server (want crd, ces, kvstore or operator)", i, m)
		}
		modes = append(modes, mode)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return sc, modes, nil
}

// Validate runs the scenario on kube-apiserver and etcd confined to
// cfg.Cores, then on the fake API server with a capacity of cfg.Cores and
// cfg.Profile, through harness.Run, and compares the two per mode. The
// error is about the runs themselves; failed checks are in the result.
func Validate(ctx context.Context, cfg ValidateConfig) (*Validation, error) {
	sc, modes, err := cfg.defaults()
	if err != nil {
		return nil, err
	}
	out := cfg.Out
	if out == "" {
		d, err := os.MkdirTemp("", "stampede-validate-")
		if err != nil {
			return nil, fmt.Errorf("validate: %w", err)
		}
		defer os.RemoveAll(d)
		out = d
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	profile := filepath.Join(out, "profile.yaml")
	f, err := os.Create(profile)
	if err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	if err := errors.Join(cfg.Profile.Write(f), f.Close()); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	fakeSc, err := withCapacity(sc, cfg.Cores, profile)
	if err != nil {
		return nil, err
	}
	run := func(name string, sc *scenarios.Scenario, b harness.Backend) (*results.Results, error) {
		fmt.Fprintf(cfg.Progress, "validate: %s run of %s (%v) ...\n", name, sc.Name, modes)
		return harness.Run(ctx, harness.Config{Scenario: sc, Backend: b, Modes: modes, Out: filepath.Join(out, name),
			Shards: cfg.Shards, AgentNice: harness.AgentNiceAuto, Executable: cfg.Executable,
			Log: cfg.Log, Progress: cfg.Progress, Live: cfg.Live, NoReport: true})
	}
	local := &confinedBackend{LocalBackend: harness.NewLocalBackend(harness.LocalConfig{KubeAPIServer: cfg.KubeAPIServer, Progress: io.Discard}),
		cores: cfg.Cores, name: fmt.Sprintf("stampede-validate-%d", os.Getpid()), cpu: map[scenarios.Mode]apiCPU{}}
	localRes, localErr := run("local", sc, local)
	fake := &meteredFake{FakeBackend: &harness.FakeBackend{}, cpu: map[scenarios.Mode]apiCPU{}}
	fakeRes, fakeErr := run("fake", fakeSc, fake)
	v := &Validation{Cores: cfg.Cores, Scenario: sc.Name, Cilium: sc.Cilium.Version, Profile: profile, Confinement: local.method}
	for _, m := range modes {
		v.Modes = append(v.Modes, compareMode(m, side("local", localRes, m, local.cpu[m]), side("fake", fakeRes, m, fake.cpu[m])))
	}
	if err := errors.Join(localErr, fakeErr); err != nil {
		return v, fmt.Errorf("validate: %w", err)
	}
	return v, nil
}

// withCapacity returns a copy of s whose fake API server has a capacity of
// cores with the profile file (api.capacity).
func withCapacity(s *scenarios.Scenario, cores float64, profile string) (*scenarios.Scenario, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("validate: copy scenario: %w", err)
	}
	var c scenarios.Scenario
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("validate: copy scenario: %w", err)
	}
	c.API.Backend = scenarios.BackendFake
	c.API.Capacity = &scenarios.Capacity{Cores: cores, Profile: profile}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("validate: scenario with api.capacity: %w", err)
	}
	return &c, nil
}
