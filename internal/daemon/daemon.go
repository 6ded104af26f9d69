package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stampede-sim/stampede/internal/ready"
)

// DefaultMetricsListen is where the diagnostics server listens unless told
// otherwise: loopback, an ephemeral port.
const DefaultMetricsListen = "127.0.0.1:0"

// MetricsEndpoint is the name of the announced diagnostics endpoint.
const MetricsEndpoint = "metrics"

// NewRegistry returns a registry with the Go runtime and process
// collectors, the base every component registers its own metrics on.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Config describes one server process for Run.
type Config struct {
	// Component names the process in its announcement ("agents",
	// "controlplane", "etcd"). Required.
	Component string
	// MetricsListen is the address of the diagnostics server; default
	// DefaultMetricsListen.
	MetricsListen string
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Handlers are served beside /metrics and /debug/pprof/, keyed by
	// http.ServeMux pattern (for example "GET /agents").
	Handlers map[string]http.Handler
	// Endpoints and Extra go into the announcement; Run adds
	// MetricsEndpoint (http://host:port of the diagnostics server).
	Endpoints map[string]string
	Extra     map[string]string
	// ReadyFile, if set, receives the announcement; Stdout, if set, gets it
	// as one line.
	ReadyFile string
	Stdout    io.Writer
	// ShutdownTimeout bounds the wait for in-flight diagnostics requests
	// (a pprof profile can take its full duration); default 5s.
	ShutdownTimeout time.Duration
}

func (c *Config) validate() error {
	if c.Component == "" {
		return errors.New("daemon: no component name")
	}
	if c.Gatherer == nil {
		return fmt.Errorf("%s: no metrics gatherer", c.Component)
	}
	if c.MetricsListen == "" {
		c.MetricsListen = DefaultMetricsListen
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	return nil
}

// Part is one long-running piece of a process: a controller, a server, the
// agents. Run must return once its context ends.
type Part struct {
	Name string
	Run  func(context.Context) error
}

// Run serves the diagnostics, runs the parts and announces the process (see
// the package documentation for the order). It returns the parts' errors,
// each prefixed with its name, joined with any error of the diagnostics
// server or the announcement; a process stopped by its context returns nil.
func Run(ctx context.Context, cfg Config, parts ...Part) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("%s: metrics listen: %w", cfg.Component, err)
	}
	g := newGroup(ctx)
	srv := &http.Server{Handler: diagnosticsMux(cfg), ReadHeaderTimeout: 10 * time.Second}
	g.goServe(srv, ln)
	for _, p := range parts {
		g.run(p)
	}
	endpoints := maps.Clone(cfg.Endpoints)
	if endpoints == nil {
		endpoints = map[string]string{}
	}
	endpoints[MetricsEndpoint] = "http://" + ln.Addr().String()
	if err := ready.Announce(cfg.ReadyFile, cfg.Stdout, ready.Announcement{
		Component: cfg.Component, Endpoints: endpoints, Extra: cfg.Extra,
	}); err != nil {
		g.fail(err)
	}
	<-g.ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.fail(fmt.Errorf("metrics server shutdown: %w", err))
	}
	return g.wait()
}

func diagnosticsMux(cfg Config) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for pattern, h := range cfg.Handlers {
		mux.Handle(pattern, h)
	}
	return mux
}

// group owns the goroutines of one Run: the first to return cancels the
// others, and wait returns once all have.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	errs []error
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel}
}

// fail records err and stops the group.
func (g *group) fail(err error) {
	g.mu.Lock()
	g.errs = append(g.errs, err)
	g.mu.Unlock()
	g.cancel()
}

func (g *group) run(p Part) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := p.Run(g.ctx)
		if err != nil && g.ctx.Err() == nil {
			g.fail(fmt.Errorf("%s: %w", p.Name, err))
			return
		}
		g.cancel()
	}()
}

func (g *group) goServe(srv *http.Server, ln net.Listener) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			g.fail(fmt.Errorf("metrics server: %w", err))
		}
	}()
}

func (g *group) wait() error {
	g.wg.Wait()
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}
