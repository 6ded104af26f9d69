package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/stampede-sim/stampede/internal/ready"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// Dir is the data directory (required). It is created if missing.
	Dir string
	// Host is the loopback address to listen on (default 127.0.0.1).
	Host string
	// UnsafeNoFsync turns fsync off: faster, and loses data on a crash.
	// Results must say when it is on.
	UnsafeNoFsync bool
	// QuotaBackendBytes is the backend size quota (default 8 GiB; etcd's
	// own default of 2 GiB is small for 20,000 pods plus churn).
	QuotaBackendBytes int64
	// LogLevel is etcd's zap log level (default "error").
	LogLevel string
	// StartTimeout bounds how long Start waits for the server to be ready
	// (default 60s).
	StartTimeout time.Duration
	// Log receives this package's own messages (default: discard).
	Log *slog.Logger
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("etcd config: data dir is empty")
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	ip := net.ParseIP(c.Host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("etcd config: host %q is not a loopback IP address", c.Host)
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = 8 << 30
	}
	if c.QuotaBackendBytes < 0 {
		return fmt.Errorf("etcd config: quota backend bytes %d is negative", c.QuotaBackendBytes)
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error", "panic", "fatal":
	default:
		return fmt.Errorf("etcd config: log level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is a running etcd.
type Server struct {
	cfg        Config
	etcd       *embed.Etcd
	metricsSrv *http.Server
	metricsLn  net.Listener
	metricsErr chan error
	clientURL  string
	metricsURL string
}

// Start starts etcd and returns once it serves clients.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	loop := func() url.URL { return url.URL{Scheme: "http", Host: net.JoinHostPort(cfg.Host, "0")} }

	ec := embed.NewConfig()
	ec.Name = "stampede"
	ec.Dir = filepath.Join(cfg.Dir, "member-data")
	ec.ListenClientUrls = []url.URL{loop()}
	ec.AdvertiseClientUrls = []url.URL{loop()}
	ec.ListenPeerUrls = []url.URL{loop()}
	ec.AdvertisePeerUrls = []url.URL{loop()}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.LogLevel = cfg.LogLevel
	ec.LogOutputs = []string{"stderr"}
	ec.Metrics = "extensive" // per-method gRPC latency histograms

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("start etcd: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("start etcd: not ready after %s", cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start etcd: %w", ctx.Err())
	}
	if len(e.Clients) == 0 {
		e.Close()
		return nil, errors.New("start etcd: no client listener")
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("etcd metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.DefaultGatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &Server{
		cfg:        cfg,
		etcd:       e,
		metricsSrv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		metricsLn:  ln,
		metricsErr: make(chan error, 1),
		clientURL:  "http://" + e.Clients[0].Addr().String(),
		metricsURL: "http://" + ln.Addr().String(),
	}
	go func() { s.metricsErr <- s.metricsSrv.Serve(ln) }()
	cfg.Log.Info("etcd started", "client", s.clientURL, "metrics", s.metricsURL, "fsync", s.Fsync())
	return s, nil
}

// ClientURL is the URL clients (the kube-apiserver, kvstore agents) use.
func (s *Server) ClientURL() string { return s.clientURL }

// MetricsURL serves /metrics and /debug/pprof.
func (s *Server) MetricsURL() string { return s.metricsURL }

// Fsync reports whether etcd fsyncs its WAL and backend.
func (s *Server) Fsync() bool { return !s.cfg.UnsafeNoFsync }

// Err reports a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops etcd and the metrics server and waits for them; ctx bounds
// the wait for in-flight metrics requests.
func (s *Server) Close(ctx context.Context) error {
	merr := s.metricsSrv.Shutdown(ctx)
	if err := <-s.metricsErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		merr = errors.Join(merr, err)
	}
	s.etcd.Close()
	if merr != nil {
		return fmt.Errorf("close etcd metrics server: %w", merr)
	}
	return nil
}

// Announcement is what `stampede etcd` announces: endpoints "client" and
// "metrics", extra "fsync" ("true" or "false") and "data-dir".
func (s *Server) Announcement() ready.Announcement {
	return ready.Announcement{
		Component: "etcd",
		PID:       os.Getpid(),
		Endpoints: map[string]string{"client": s.clientURL, "metrics": s.metricsURL},
		Extra:     map[string]string{"fsync": strconv.FormatBool(s.Fsync()), "data-dir": s.cfg.Dir},
	}
}

// Run starts etcd, announces it to readyFile (may be empty) and stdout,
// and serves until ctx ends or etcd fails.
func Run(ctx context.Context, cfg Config, readyFile string, stdout io.Writer) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := ready.Announce(readyFile, stdout, s.Announcement()); err != nil {
		return errors.Join(err, s.Close(ctx))
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-s.Err():
		runErr = fmt.Errorf("etcd: %w", err)
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(runErr, s.Close(closeCtx))
}
