package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/stampede-sim/stampede/internal/daemon"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// Dir is the data directory (required). It is created if missing.
	// With Ephemeral it is the parent of a fresh directory the server
	// creates at Start and removes at Close.
	Dir string
	// Ephemeral keeps no data beyond the server's life, as a
	// clustermesh-apiserver's etcd sidecar keeps its data in an emptyDir
	// (Helm clustermesh.apiserver.etcd.storageMedium: Disk or Memory; put
	// Dir on a tmpfs such as /dev/shm for Memory): every start is a new
	// cluster, filled again from the API server.
	Ephemeral bool
	// InitialClusterToken is etcd's --initial-cluster-token (default
	// "etcd-cluster", etcd's). etcd derives the cluster ID from the
	// members and this token, so distinct tokens give mesh replicas
	// distinct cluster IDs, which agents compare to tell a reconnect to
	// another replica (ClusterMesh validates the etcd cluster ID, cilium
	// commit 174e721c).
	InitialClusterToken string
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
	cfg       Config
	etcd      *embed.Etcd
	clientURL string
	dataDir   string // the directory in use
	clusterID uint64
	closeOnce sync.Once
}

// Start starts etcd and returns once it serves clients.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	dataDir := cfg.Dir
	if cfg.Ephemeral {
		d, err := os.MkdirTemp(cfg.Dir, "etcd-")
		if err != nil {
			return nil, fmt.Errorf("etcd data dir: %w", err)
		}
		dataDir = d
	}
	removeEphemeral := func() {
		if cfg.Ephemeral {
			_ = os.RemoveAll(dataDir)
		}
	}
	loop := func() url.URL { return url.URL{Scheme: "http", Host: net.JoinHostPort(cfg.Host, "0")} }

	ec := embed.NewConfig()
	ec.Name = "stampede"
	ec.Dir = filepath.Join(dataDir, "member-data")
	if cfg.InitialClusterToken != "" {
		ec.InitialClusterToken = cfg.InitialClusterToken
	}
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
		removeEphemeral()
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	fail := func(err error) (*Server, error) {
		e.Close()
		removeEphemeral()
		return nil, err
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fail(fmt.Errorf("start etcd: %w", err))
	case <-timer.C:
		return fail(fmt.Errorf("start etcd: not ready after %s", cfg.StartTimeout))
	case <-ctx.Done():
		return fail(fmt.Errorf("start etcd: %w", ctx.Err()))
	}
	if len(e.Clients) == 0 {
		return fail(errors.New("start etcd: no client listener"))
	}

	s := &Server{cfg: cfg, etcd: e, clientURL: "http://" + e.Clients[0].Addr().String(), dataDir: dataDir, clusterID: uint64(e.Server.Cluster().ID())}
	cfg.Log.Info("etcd started", "client", s.clientURL, "fsync", s.Fsync())
	return s, nil
}

// ClientURL is the URL clients (the kube-apiserver, kvstore agents) use.
func (s *Server) ClientURL() string { return s.clientURL }

// Fsync reports whether etcd fsyncs its WAL and backend.
func (s *Server) Fsync() bool { return !s.cfg.UnsafeNoFsync }

// Err reports a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// ClusterID is etcd's cluster ID, which every response header carries.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// DataDir is the data directory in use (with Config.Ephemeral, the fresh
// one under Config.Dir).
func (s *Server) DataDir() string { return s.dataDir }

// Close stops etcd and waits for it; an ephemeral data directory is
// removed.
// Close may be called more than once (a test kills a server it also
// cleans up).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.etcd.Close()
		if s.cfg.Ephemeral {
			_ = os.RemoveAll(s.dataDir)
		}
	})
}

// RunConfig is the process around the server: where its diagnostics
// listen and where it announces itself.
type RunConfig struct {
	// MetricsListen is the diagnostics address (default Config.Host, an
	// ephemeral port).
	MetricsListen string
	// ReadyFile, if set, receives the announcement; Stdout, if set, too.
	ReadyFile string
	Stdout    io.Writer
}

// Run starts etcd and runs it as an internal/daemon process until ctx ends
// or etcd fails. It announces component "etcd" with endpoints "client" and
// "metrics", and extra "fsync" ("true" or "false") and "data-dir".
func Run(ctx context.Context, cfg Config, rc RunConfig) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if rc.MetricsListen == "" {
		rc.MetricsListen = net.JoinHostPort(s.cfg.Host, "0")
	}
	return daemon.Run(ctx, daemon.Config{
		Component:     "etcd",
		MetricsListen: rc.MetricsListen,
		Gatherer:      prometheus.DefaultGatherer,
		Endpoints:     map[string]string{"client": s.clientURL},
		Extra: map[string]string{
			"fsync": strconv.FormatBool(s.Fsync()), "data-dir": s.dataDir,
			"ephemeral": strconv.FormatBool(s.cfg.Ephemeral), "cluster-id": strconv.FormatUint(s.clusterID, 16),
		},
		ReadyFile: rc.ReadyFile,
		Stdout:    rc.Stdout,
	}, daemon.Part{Name: "etcd", Run: func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.Err():
			return err
		}
	}})
}
