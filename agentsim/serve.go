package agentsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/ready"
)

// ServeConfig configures Serve: a shard process.
type ServeConfig struct {
	// Fleet configures the shard's agents; Registerer is set by Serve.
	Fleet Config
	// Listen is the address of the metrics endpoint (default 127.0.0.1:0).
	Listen string
	// ReadyFile, if set, receives the ready announcement.
	ReadyFile string
	// Stdout receives the announcement line (nil: none).
	Stdout io.Writer
}

// Serve runs one shard until ctx ends: it builds the fleet, serves
// /metrics, /debug/pprof/ and GET /agents on Listen, announces the endpoint
// "metrics" (extra: shard, agents, mode) and runs the agents. It returns
// once every agent and the server stopped.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Fleet.Registerer = reg
	f, err := New(ctx, cfg.Fleet)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		f.closeAll()
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET "+agentcontract.StatusPath, f.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(fctx)
	}()
	shards := max(cfg.Fleet.Shards, 1)
	err = ready.Announce(cfg.ReadyFile, cfg.Stdout, ready.Announcement{
		Component: "agents",
		Endpoints: map[string]string{"metrics": "http://" + ln.Addr().String()},
		Extra: map[string]string{
			"shard":  strconv.Itoa(cfg.Fleet.Shard) + "/" + strconv.Itoa(shards),
			"agents": strconv.Itoa(len(f.agents)),
			"mode":   string(cfg.Fleet.Mode),
		},
	})
	if err != nil {
		cancel()
	}
	select {
	case <-ctx.Done():
	case <-done:
	case serr := <-srvErr:
		if err == nil && !errors.Is(serr, http.ErrServerClosed) {
			err = fmt.Errorf("metrics server: %w", serr)
		}
	}
	cancel()
	<-done
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = fmt.Errorf("metrics server shutdown: %w", serr)
	}
	return err
}
