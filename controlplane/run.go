package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/daemon"
	"github.com/stampede-sim/stampede/scenarios"
)

// Config configures Run.
type Config struct {
	// Mode names the scenario's mode (or a preset); its axes select what
	// runs: the identity GC for CiliumIdentities (agent or operator
	// identities), the kvstore identity GC (kvstore identities), the
	// CiliumEndpointSlice controller (ces endpoints), operator-managed
	// identities (operator identities), the xDS server (central).
	Mode scenarios.Mode
	// Scenario supplies the knobs (controlPlane.*, agent.labelFilter,
	// cluster.name). Required, defaulted and valid.
	Scenario *scenarios.Scenario
	// REST reaches the API server. Required.
	REST *rest.Config
	// KVStore lists the etcd client URLs (kvstore mode).
	KVStore []string
	// XDSListen is the xDS gRPC listen address (xds mode); default
	// 127.0.0.1:0.
	XDSListen string
	// MetricsListen is the /metrics and /debug/pprof listen address;
	// default 127.0.0.1:0.
	MetricsListen string
	// ReadyFile receives the announcement (endpoints "metrics" and, in xds
	// mode, "xds"); Stdout gets it too.
	ReadyFile string
	Stdout    io.Writer
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// CESSource is where CiliumEndpointSlices are built from:
	// CESSourceCEPs (Cilium's default CES controller) or CESSourcePods (its
	// slim controller, ces-controller-mode=slim: from Pods, for agents that
	// write no CiliumEndpoints). Empty: as the mode's endpoints axis says
	// (ces: CEPs, ces-slim: Pods; none otherwise). Tests set it to run the
	// slim source under another mode's identities.
	CESSource string

	// axes are Mode's, set by validate.
	axes scenarios.Axes
}

// Values of Config.CESSource.
const (
	CESSourceCEPs = "ceps"
	CESSourcePods = "pods"
)

func (c *Config) validate() error {
	if c.Scenario == nil {
		return errors.New("controlplane: no scenario")
	}
	if c.REST == nil {
		return errors.New("controlplane: no API server configuration (--api-url)")
	}
	spec, ok := c.Scenario.ModeSpec(c.Mode)
	if !ok {
		if spec, ok = scenarios.Preset(c.Mode); !ok {
			return fmt.Errorf("controlplane: unknown mode %q: scenario %s does not list it and it is no preset (its modes: %v)", c.Mode, c.Scenario.Name, c.Scenario.ModeNames())
		}
	}
	c.axes = spec.Axes
	if c.axes.Identity == scenarios.IdentityKVStore && len(c.KVStore) == 0 {
		return fmt.Errorf("controlplane: mode %s has kvstore identities and needs the etcd URL (--kvstore)", c.Mode)
	}
	switch c.CESSource {
	case "":
		c.CESSource = c.axes.CESSource()
	case CESSourceCEPs:
	case CESSourcePods:
		if c.axes.Identity != scenarios.IdentityAgent && c.axes.Identity != scenarios.IdentityOperator {
			return fmt.Errorf("controlplane: CiliumEndpointSlices from pods need CiliumIdentity objects (agent or operator identities), not mode %s (%s)", c.Mode, c.axes)
		}
	default:
		return fmt.Errorf("controlplane: unknown CES source %q (want %s or %s)", c.CESSource, CESSourceCEPs, CESSourcePods)
	}
	if c.XDSListen == "" {
		c.XDSListen = "127.0.0.1:0"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Run builds the functions of cfg.Mode, then runs them as one
// internal/daemon process: it serves /metrics and /debug/pprof, announces
// its endpoints, and runs until ctx ends (SIGTERM in the command) or a
// function fails, then stops everything and waits for it. Nothing runs
// until every function is built, so a bad knob returns with no goroutine
// left behind.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	reg := daemon.NewRegistry()
	p, err := build(cfg, reg)
	if err != nil {
		return err
	}
	p.log.Info("starting", "endpoints", p.endpoints)
	err = daemon.Run(ctx, daemon.Config{
		Component:     "controlplane",
		MetricsListen: cfg.MetricsListen,
		Gatherer:      reg,
		Handlers:      p.handlers,
		Endpoints:     p.endpoints,
		Extra:         map[string]string{"mode": string(cfg.Mode)},
		ReadyFile:     cfg.ReadyFile,
		Stdout:        cfg.Stdout,
	}, p.parts...)
	return errors.Join(err, p.close())
}

// process is what build made for one mode.
type process struct {
	log       *slog.Logger
	parts     []daemon.Part
	handlers  map[string]http.Handler
	endpoints map[string]string
	// listeners are closed by close; those a part served are closed twice,
	// which is harmless.
	listeners []net.Listener
}

func (p *process) add(name string, run func(context.Context) error) {
	p.parts = append(p.parts, daemon.Part{Name: name, Run: run})
}

func (p *process) close() error {
	var errs []error
	for _, l := range p.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// build constructs the functions of cfg.Mode without starting any.
func build(cfg Config, reg *prometheus.Registry) (_ *process, err error) {
	p := &process{
		log:       cfg.Logger.With("component", "controlplane", "mode", cfg.Mode),
		handlers:  map[string]http.Handler{},
		endpoints: map[string]string{},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	k, err := newKube(cfg.REST, cfg.Scenario)
	if err != nil {
		return nil, err
	}
	knobs := cfg.Scenario.ControlPlane
	events, err := newWatchEvents(reg)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.axes.Identity == scenarios.IdentityCentral:
		return p, buildXDS(p, cfg, k, events, reg)
	case cfg.axes.Identity == scenarios.IdentityKVStore:
		gc, err := newKVStoreGC(kvstoreGCConfig{endpoints: cfg.KVStore, interval: knobs.IdentityGC.Interval.Duration,
			rateInterval: knobs.IdentityGC.RateInterval.Duration, rateLimit: knobs.IdentityGC.RateLimit, log: p.log, reg: reg})
		if err != nil {
			return nil, err
		}
		p.add("kvstore identity gc", gc.run)
		return p, nil
	}
	withCES := cfg.CESSource != ""
	gc, err := newIdentityGC(identityGCConfig{events: events, kube: k, interval: knobs.IdentityGC.Interval.Duration, timeout: knobs.IdentityGC.HeartbeatTimeout.Duration,
		rateInterval: knobs.IdentityGC.RateInterval.Duration, rateLimit: knobs.IdentityGC.RateLimit, slices: withCES, now: cfg.Now, log: p.log, reg: reg})
	if err != nil {
		return nil, err
	}
	p.add("identity gc", gc.run)
	if withCES {
		ces, err := newCESController(cesConfig{events: events, kube: k, knobs: knobs.CES, log: p.log, reg: reg, source: cfg.CESSource, scenario: cfg.Scenario})
		if err != nil {
			return nil, err
		}
		p.add("ces controller", ces.run)
	}
	if cfg.axes.OperatorManagesIdentities() {
		oi, err := newOperatorIdentities(operatorIdentitiesConfig{events: events, kube: k, scenario: cfg.Scenario, log: p.log, reg: reg})
		if err != nil {
			return nil, err
		}
		p.add("operator identities", oi.run)
	}
	return p, nil
}

// buildXDS adds the xDS server and its source to p.
func buildXDS(p *process, cfg Config, k *kube, events *prometheus.CounterVec, reg prometheus.Registerer) error {
	srv, err := xds.New(xds.Config{Registerer: reg, Logger: p.log, Now: cfg.Now})
	if err != nil {
		return err
	}
	src, err := newXDSSource(xdsSourceConfig{events: events, kube: k, server: srv, scenario: cfg.Scenario, log: p.log, reg: reg})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.XDSListen)
	if err != nil {
		return fmt.Errorf("controlplane: xds listen: %w", err)
	}
	p.listeners = append(p.listeners, lis)
	p.endpoints["xds"] = lis.Addr().String()
	p.handlers["/debug/xds/push-latency"] = srv.PushLatencyHandler()
	p.add("xds server", func(ctx context.Context) error {
		// Agents are served once the cluster state has been read.
		select {
		case <-src.synced:
		case <-ctx.Done():
			return nil
		}
		return srv.Serve(ctx, lis)
	})
	p.add("xds source", src.run)
	return nil
}
