package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/internal/daemon"
)

// RunConfig is the `stampede mesh` process: one replica's mirror, its
// clients and its diagnostics server.
type RunConfig struct {
	// Replica, Cluster and Source go to the mirror's Config.
	Replica int
	Cluster string
	Source  Source
	// REST is the API server (URL, bearer token, CA) (required).
	REST *rest.Config
	// Etcd lists the replica's etcd client URLs (required).
	Etcd []string
	// MetricsListen, ReadyFile and Stdout are the daemon's.
	MetricsListen string
	ReadyFile     string
	Stdout        io.Writer
	Log           *slog.Logger
}

// Run runs one replica until ctx ends. It announces component "mesh" with
// endpoint "metrics" and extra "replica", "source", "cluster" and "etcd".
func Run(ctx context.Context, rc RunConfig) error {
	if rc.REST == nil {
		return errors.New("mesh: api: no API server config")
	}
	if len(rc.Etcd) == 0 {
		return errors.New("mesh: etcd: no client URL")
	}
	if rc.Log == nil {
		rc.Log = slog.New(slog.DiscardHandler)
	}
	r := rest.CopyConfig(rc.REST)
	if r.UserAgent == "" {
		r.UserAgent = "stampede-mesh-" + strconv.Itoa(rc.Replica)
	}
	dyn, err := dynamic.NewForConfig(r)
	if err != nil {
		return fmt.Errorf("mesh: API client: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: rc.Etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return fmt.Errorf("mesh: etcd client: %w", err)
	}
	defer cli.Close()
	reg := daemon.NewRegistry()
	m, err := New(Config{Replica: rc.Replica, Cluster: rc.Cluster, Source: rc.Source, Kube: dyn, Etcd: cli, Registerer: reg, Log: rc.Log})
	if err != nil {
		return err
	}
	return daemon.Run(ctx, daemon.Config{
		Component:     "mesh",
		MetricsListen: rc.MetricsListen,
		Gatherer:      reg,
		Extra: map[string]string{
			"replica": strconv.Itoa(rc.Replica), "source": string(m.cfg.Source), "cluster": m.cfg.Cluster, "etcd": rc.Etcd[0],
		},
		ReadyFile: rc.ReadyFile,
		Stdout:    rc.Stdout,
	}, daemon.Part{Name: "mirror", Run: m.Run})
}
