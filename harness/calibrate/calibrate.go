package calibrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/stampede-sim/stampede/harness"
	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/scenarios"
)

// Config configures a calibration.
type Config struct {
	// KubeAPIServer is the kube-apiserver binary (default: where `make
	// tools` puts it, harness.KubeAPIServerPath). It is never built here.
	KubeAPIServer string
	// Executable is the stampede binary that runs `stampede etcd` (default:
	// this process's executable).
	Executable string
	// Dir receives the backend's files and logs (default: a temporary
	// directory, removed at the end).
	Dir string
	// Workload is what is measured (default DefaultWorkload).
	Workload Workload
	// Name is the profile's name (default capacity.DefaultProfile).
	Name string
	// Idle is how long the idle baseline is measured, before and after the
	// workload (default 5s).
	Idle time.Duration
	// Progress receives the progress line; Live rewrites it in place (a
	// terminal).
	Progress io.Writer
	Live     bool
	Log      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Result is a calibration.
type Result struct {
	Profile *capacity.Profile
	Model   *Model
	Phases  []Phase
	// Baseline is the idle CPU rate (cores) of kube-apiserver and etcd
	// together that was subtracted from every phase.
	Baseline float64
	// IdleBefore and IdleAfter are the idle rates measured before and
	// after the workload; Baseline is their mean.
	IdleBefore, IdleAfter float64
	Wall                  time.Duration
}

// ErrNoKubeAPIServer is returned when the kube-apiserver binary has not
// been built.
var ErrNoKubeAPIServer = errors.New("kube-apiserver not built")

// KubeAPIServer returns the kube-apiserver binary calibrate would run, or
// an error wrapping ErrNoKubeAPIServer that says how to build it.
func KubeAPIServer(path string) (string, error) {
	if path == "" {
		var err error
		if path, err = harness.KubeAPIServerPath(harness.KubernetesVersion); err != nil {
			return "", err
		}
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return "", fmt.Errorf("%w: kube-apiserver %s is not at %s; build it with `make tools` in the stampede repository (or point %s at a kube-apiserver %s binary)",
			ErrNoKubeAPIServer, harness.KubernetesVersion, path, harness.KubeAPIServerEnv, harness.KubernetesVersion)
	}
	return path, nil
}

func (c *Config) defaults() error {
	bin, err := KubeAPIServer(c.KubeAPIServer)
	if err != nil {
		return err
	}
	c.KubeAPIServer = bin
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("calibrate: find stampede executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Workload.Concurrency == 0 {
		c.Workload = DefaultWorkload()
	}
	if err := c.Workload.Validate(); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	if c.Name == "" {
		c.Name = capacity.DefaultProfile
	}
	if c.Idle <= 0 {
		c.Idle = 5 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Run starts the local backend (kube-apiserver with its etcd, as `stampede
// run --api local` does), runs the workload against it, measures the
// CPU-seconds both processes spend in every phase, and fits the profile.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	start := cfg.Now()
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "stampede-calibrate-")
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	pr := newProgress(cfg.Progress, cfg.Live)
	defer pr.done()
	pr.set("starting kube-apiserver %s and etcd", harness.KubernetesVersion)
	b, api, token, err := startLocal(ctx, cfg.KubeAPIServer, cfg.Executable, filepath.Join(dir, "backend"), cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer func() { _ = b.Stop(context.WithoutCancel(ctx)) }()

	res, err := measureWorkload(ctx, cfg, api, token, pr)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	if cfg.Dir != "" {
		// The raw phases, to refit or inspect.
		if data, err := json.MarshalIndent(res.Phases, "", "  "); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "phases.json"), data, 0o644)
		}
	}
	model, err := FitModel(res.Phases)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	res.Model = model
	res.Wall = cfg.Now().Sub(start)
	res.Profile = &capacity.Profile{
		SchemaVersion:        capacity.SchemaVersion,
		Name:                 cfg.Name,
		KubeAPIServerVersion: api.Facts["kubernetes.version"],
		EtcdVersion:          etcdVersion(),
		MeasuredAt:           start.UTC().Truncate(time.Second),
		Commit:               commit(),
		Machine:              machineFacts(),
		Requests:             model.Requests,
		Resources:            model.Resources,
		Background:           background(res),
		MetricsScrape:        model.MetricsScrape,
		Watch:                model.Watch,
		Fit:                  model.Fit,
	}
	if bg := res.Profile.Background; bg.Value > 0 {
		model.Table = append(model.Table, CoefRow{Group: "idle", Name: "background", Coefficient: bg, Samples: 2, Unit: UnitCores,
			Note: "kube-apiserver and etcd with nothing asked of them, before and after the workload"})
	}
	if err := res.Profile.Validate(); err != nil {
		return res, fmt.Errorf("calibrate: the fitted profile is not usable: %w", err)
	}
	return res, nil
}

// background is the idle rate as a profile coefficient: the mean of the
// two idle periods, its error half their difference; none when the
// processes were measured idle at 0.
func background(r *Result) capacity.Coefficient {
	if r.Baseline <= 0 {
		return capacity.Coefficient{}
	}
	return capacity.Coefficient{Value: r.Baseline, StdErr: math.Abs(r.IdleAfter-r.IdleBefore) / 2}
}

// startLocal starts harness.LocalBackend for an admin user only (crd
// mode's RBAC; the workload runs as admin).
func startLocal(ctx context.Context, bin, exe, dir string, log *slog.Logger) (*harness.LocalBackend, *harness.APIServer, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, "", err
	}
	token := randomHex(16)
	b := harness.NewLocalBackend(harness.LocalConfig{KubeAPIServer: bin, Progress: io.Discard, Log: log})
	api, err := b.Start(ctx, harness.BackendEnv{Dir: dir, Mode: scenarios.ModeCRD, Executable: exe, Log: log,
		Users: []harness.User{{Name: "stampede-admin", Role: harness.RoleAdmin, Token: token}}})
	if err != nil {
		return nil, nil, "", err
	}
	return b, api, token, nil
}

func measureWorkload(ctx context.Context, cfg Config, api *harness.APIServer, token string, pr *progress) (*Result, error) {
	meter := &cpuMeter{pids: []int{api.Processes["apiserver"], api.Processes["etcd"]}}
	for name, pid := range map[string]int{"apiserver": api.Processes["apiserver"], "etcd": api.Processes["etcd"]} {
		if pid <= 0 {
			return nil, fmt.Errorf("local backend reported no %s process", name)
		}
	}
	c, err := newClient(api.URL, api.CAFile, token, cfg.Workload.Concurrency)
	if err != nil {
		return nil, err
	}
	defer c.close()
	pr.set("measuring the idle baseline (%v)", cfg.Idle)
	// Let start-up work (CRD establishment, RBAC bootstrap) settle first.
	if _, err := meter.idle(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	idle0, err := meter.idle(ctx, cfg.Idle)
	if err != nil {
		return nil, err
	}
	meter.baseline = idle0
	w := cfg.Workload
	total := len(kinds)*len(w.Sizes)*(2*len(w.ListSizes)+5) + len(w.Sizes)*(len(w.Watchers)+3)
	if w.Scrapes > 0 {
		total += 3
	}
	r := &runner{w: w, c: c, caFile: api.CAFile, meter: meter, rng: rand.New(rand.NewPCG(w.Seed, 0x5eed)),
		objects: map[string]map[string]any{}}
	r.onPhase = func(p Phase) {
		pr.set("phase %d/~%d: %s: %.2f CPU-s in %v", len(r.phases), total, p, p.CPU, p.Wall.Round(time.Millisecond))
	}
	for _, size := range w.Sizes {
		for _, k := range kinds {
			if err := r.requestPhases(ctx, k, size); err != nil {
				return nil, err
			}
		}
		if err := r.watchPhases(ctx, size); err != nil {
			return nil, err
		}
	}
	if err := r.scrapePhases(ctx, api.MetricsURLs); err != nil {
		return nil, err
	}
	pr.set("measuring the idle baseline again (%v)", cfg.Idle)
	idle1, err := meter.idle(ctx, cfg.Idle)
	if err != nil {
		return nil, err
	}
	// The baseline is the mean of both idle periods; phases were measured
	// against the first, so correct them for the difference.
	baseline := (idle0 + idle1) / 2
	for i := range r.phases {
		r.phases[i].CPU = r.phases[i].GrossCPU - baseline*r.phases[i].Wall.Seconds()
	}
	return &Result{Phases: r.phases, Baseline: baseline, IdleBefore: idle0, IdleAfter: idle1}, nil
}

func machineFacts() capacity.Machine {
	m := capacity.Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// etcdVersion is the etcd server module `stampede etcd` is built from.
func etcdVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/server/v3" {
				return d.Version
			}
		}
	}
	return "unknown"
}

func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}
