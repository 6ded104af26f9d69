package main

import (
	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/controlplane/etcd"
)

func newEtcdCmd(g *globals) *cobra.Command {
	var (
		cfg etcd.Config
		rc  etcd.RunConfig
	)
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run a single-member etcd (the kvstore, and the local kube-apiserver's storage)",
		Long: `Run a single-member etcd server (go.etcd.io/etcd/server/v3/embed) on
loopback ephemeral ports until interrupted. Once it serves, it writes a JSON
announcement to --ready-file and stdout with endpoints "client" (etcd client
URL, also serving etcd's /metrics and /health) and "metrics" (/metrics and
/debug/pprof), and extra "fsync" ("true" unless --unsafe-no-fsync),
"data-dir", "ephemeral" and "cluster-id". With --ephemeral the data lives in
a fresh directory under --data-dir, removed at exit, as a ClusterMesh etcd
sidecar's emptyDir (a tmpfs --data-dir such as /dev/shm for storageMedium
Memory); --initial-cluster-token gives each mesh replica its own cluster ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg.Log = log
			rc.Stdout = cmd.OutOrStdout()
			return etcd.Run(cmd.Context(), cfg, rc)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "data-dir", "", "data directory (required)")
	f.StringVar(&cfg.Host, "host", "127.0.0.1", "loopback address to listen on")
	f.BoolVar(&cfg.Ephemeral, "ephemeral", false, "keep the data in a fresh directory under --data-dir, removed at exit")
	f.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", "", "etcd's initial cluster token (distinct per mesh replica, so that cluster IDs differ)")
	f.BoolVar(&cfg.UnsafeNoFsync, "unsafe-no-fsync", false, "turn fsync off (faster, loses data on a crash; recorded in results)")
	f.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", 8<<30, "backend size quota in bytes")
	f.StringVar(&cfg.LogLevel, "etcd-log-level", "error", "etcd's own log level: debug, info, warn or error")
	f.StringVar(&rc.MetricsListen, "metrics-listen", "", "metrics and pprof listen address (default: --host, an ephemeral port)")
	f.StringVar(&rc.ReadyFile, "ready-file", "", "write the JSON announcement here once serving")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}
