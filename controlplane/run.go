package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

// Config configures Run.
type Config struct {
	// Mode selects what runs: crd (identity GC), ces (GC and the
	// CiliumEndpointSlice controller), kvstore (kvstore identity GC),
	// operator (GC and operator-managed identities), xds (the xDS server).
	Mode scenarios.Mode
	// Scenario supplies the knobs (controlPlane.*, agent.labelFilter,
	// cluster.name). Required, defaulted and valid.
	Scenario *scenarios.Scenario
	// REST reaches the API server. Required.
	REST *rest.Config
	// KVStore is the etcd client URL (kvstore mode).
	KVStore string
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
}

func (c *Config) validate() error {
	if c.Scenario == nil {
		return errors.New("controlplane: no scenario")
	}
	if c.REST == nil {
		return errors.New("controlplane: no API server configuration (--api)")
	}
	switch c.Mode {
	case scenarios.ModeCRD, scenarios.ModeCES, scenarios.ModeOperator, scenarios.ModeXDS:
	case scenarios.ModeKVStore:
		if c.KVStore == "" {
			return errors.New("controlplane: kvstore mode needs the etcd URL (--kvstore)")
		}
	default:
		return fmt.Errorf("controlplane: unknown mode %q (want crd, ces, kvstore, operator or xds)", c.Mode)
	}
	if c.XDSListen == "" {
		c.XDSListen = "127.0.0.1:0"
	}
	if c.MetricsListen == "" {
		c.MetricsListen = "127.0.0.1:0"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Run starts the functions of cfg.Mode, announces its endpoints, and runs
// until ctx ends (SIGTERM in the command), then stops everything and waits
// for it.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("component", "controlplane", "mode", cfg.Mode)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", name, err)
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
				cancel(err)
			}
		}()
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	endpoints := map[string]string{}

	k, err := newKube(cfg.REST, cfg.Scenario)
	if err != nil {
		return err
	}
	knobs := cfg.Scenario.ControlPlane
	events, err := newWatchEvents(reg)
	if err != nil {
		return err
	}
	switch cfg.Mode {
	case scenarios.ModeXDS:
		srv, err := xds.New(xds.Config{Registerer: reg, Logger: log, Now: cfg.Now})
		if err != nil {
			return err
		}
		lis, err := net.Listen("tcp", cfg.XDSListen)
		if err != nil {
			return fmt.Errorf("controlplane: xds listen: %w", err)
		}
		endpoints["xds"] = lis.Addr().String()
		mux.Handle("/debug/xds/push-latency", srv.PushLatencyHandler())
		src, err := newXDSSource(xdsSourceConfig{events: events, kube: k, server: srv, scenario: cfg.Scenario, log: log, reg: reg})
		if err != nil {
			lis.Close()
			return err
		}
		start("xds server", func(ctx context.Context) error {
			// Agents are served once the cluster state has been read.
			select {
			case <-src.synced:
			case <-ctx.Done():
				lis.Close()
				return nil
			}
			return srv.Serve(ctx, lis)
		})
		start("xds source", src.run)
	case scenarios.ModeKVStore:
		gc, err := newKVStoreGC(kvstoreGCConfig{endpoint: cfg.KVStore, interval: knobs.IdentityGC.Interval.Duration, log: log, reg: reg})
		if err != nil {
			return err
		}
		start("kvstore identity gc", gc.run)
	default:
		gc, err := newIdentityGC(identityGCConfig{events: events, kube: k, interval: knobs.IdentityGC.Interval.Duration, timeout: knobs.IdentityGC.HeartbeatTimeout.Duration, now: cfg.Now, log: log, reg: reg})
		if err != nil {
			return err
		}
		start("identity gc", gc.run)
		if cfg.Mode == scenarios.ModeCES {
			ces, err := newCESController(cesConfig{events: events, kube: k, knobs: knobs.CES, log: log, reg: reg})
			if err != nil {
				return err
			}
			start("ces controller", ces.run)
		}
		if cfg.Mode == scenarios.ModeOperator {
			oi, err := newOperatorIdentities(operatorIdentitiesConfig{events: events, kube: k, scenario: cfg.Scenario, log: log, reg: reg})
			if err != nil {
				return err
			}
			start("operator identities", oi.run)
		}
	}

	mlis, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		cancel(nil)
		wg.Wait()
		return fmt.Errorf("controlplane: metrics listen: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hs.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("metrics server: %w", err))
		}
	}()
	endpoints["metrics"] = "http://" + mlis.Addr().String()
	if err := ready.Announce(cfg.ReadyFile, cfg.Stdout, ready.Announcement{
		Component: "controlplane", Endpoints: endpoints, Extra: map[string]string{"mode": string(cfg.Mode)},
	}); err != nil {
		cancel(err)
	}
	log.Info("serving", "endpoints", endpoints)
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	hs.Shutdown(sctx)
	scancel()
	wg.Wait()
	errMu.Lock()
	defer errMu.Unlock()
	return errors.Join(errs...)
}
