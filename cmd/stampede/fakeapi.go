package main

import (
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/capacity"
)

func newFakeapiCmd(g *globals) *cobra.Command {
	var (
		cfg             fakeapi.Config
		useTLS          bool
		tokenFile       string
		authzFile       string
		kubeconfigOut   string
		readyFile       string
		capacityCores   float64
		capacityProfile string
	)
	cmd := &cobra.Command{
		Use:   "fakeapi",
		Short: "Serve an in-memory Kubernetes API server until SIGTERM",
		Long: `Serve an in-memory Kubernetes API server (core/v1 namespaces, pods, nodes,
configmaps, serviceaccounts; coordination.k8s.io leases; Cilium's CRDs) that
unmodified client-go and kubectl talk to. Once it serves it announces its
endpoints ("api", "metrics"; extra "ca", "token") on stdout and in
--ready-file, and writes an admin kubeconfig to --kubeconfig-out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.PlainHTTP = !useTLS
			if tokenFile != "" {
				if cfg.Tokens, err = fakeapi.LoadTokenFile(tokenFile); err != nil {
					return fmt.Errorf("--token-auth-file: %w", err)
				}
			}
			if capacityCores != 0 || cmd.Flags().Changed("capacity-cores") {
				if math.IsNaN(capacityCores) || math.IsInf(capacityCores, 0) || capacityCores <= 0 {
					return fmt.Errorf("--capacity-cores: must be a positive finite number, got %v", capacityCores)
				}
				profile, err := capacity.Resolve(capacityProfile)
				if err != nil {
					return fmt.Errorf("--capacity-profile: %w", err)
				}
				cfg.Capacity = &fakeapi.Capacity{Cores: capacityCores, Profile: profile}
			} else if capacityProfile != "" {
				return fmt.Errorf("--capacity-profile %s: needs --capacity-cores", capacityProfile)
			}
			if authzFile != "" {
				if cfg.Rules, err = fakeapi.LoadAuthzFile(authzFile); err != nil {
					return fmt.Errorf("--authz-file: %w", err)
				}
			}
			return fakeapi.Run(cmd.Context(), cfg, fakeapi.RunOptions{
				KubeconfigOut: kubeconfigOut,
				ReadyFile:     readyFile,
				Stdout:        cmd.OutOrStdout(),
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", fakeapi.DefaultListen, "address of the API server (which also serves /metrics and /debug/pprof/)")
	f.BoolVar(&useTLS, "tls", true, "serve HTTPS (HTTP/2 and HTTP/1.1) with a self-signed certificate; false serves plain HTTP/1.1 and h2c")
	f.StringVar(&cfg.CertDir, "cert-dir", "", "directory to write the self-signed certificate to (ca.crt, which must not exist yet; removed on exit); default: a temporary directory")
	f.StringVar(&cfg.StateDir, "state-dir", "", "keep the objects, resourceVersions, admin token and certificate here, so that a fakeapi started again over it (after a stop or a SIGKILL) serves the same cluster, as a kube-apiserver over its etcd; default: none (state in memory only)")
	f.StringVar(&tokenFile, "token-auth-file", "", `static tokens, CSV lines token,user,uid,"group1,group2" (kube-apiserver format)`)
	f.StringVar(&authzFile, "authz-file", "", "YAML list of rules {users, groups, verbs, apiGroups, resources} (\"*\" wildcards); absent: any authenticated user may do anything")
	f.BoolVar(&cfg.AllowAnonymous, "anonymous-auth", false, "let requests without a token through as system:anonymous")
	f.IntVar(&cfg.MaxRequestsInflight, "max-requests-inflight", fakeapi.DefaultMaxRequestsInflight, "with --max-mutating-requests-inflight, the server concurrency limit API Priority and Fairness shares out (their sum, as kube-apiserver; both negative: no limit)")
	f.IntVar(&cfg.MaxMutatingRequestsInflight, "max-mutating-requests-inflight", fakeapi.DefaultMaxMutatingRequestsInflight, "added to --max-requests-inflight for APF's server concurrency limit")
	f.IntVar(&cfg.WatchHistory, "watch-history", fakeapi.DefaultWatchHistory, "events kept per resource for watch resumption (older resourceVersions get 410 Gone)")
	f.IntVar(&cfg.WatchBuffer, "watch-buffer", fakeapi.DefaultWatchBuffer, "events a watcher may fall behind before it is closed")
	f.DurationVar(&cfg.WatchBatchWindow, "watch-batch-window", fakeapi.DefaultWatchBatchWindow, "how long a woken watcher waits for more events before writing them in one batch (negative: write each event at once, as kube-apiserver does)")
	f.DurationVar(&cfg.BookmarkInterval, "bookmark-interval", fakeapi.DefaultBookmarkInterval, "interval of watch bookmarks")
	f.Float64Var(&capacityCores, "capacity-cores", 0, "serve with the capacity of a kube-apiserver (and its etcd) of this many cores of the profile's machine; 0: no capacity model")
	f.StringVar(&capacityProfile, "capacity-profile", "", "calibration profile for --capacity-cores: a shipped name or a file (default: "+capacity.DefaultProfile+")")
	f.StringVar(&kubeconfigOut, "kubeconfig-out", "", "write an admin kubeconfig to this path")
	f.StringVar(&readyFile, "ready-file", "", "write the ready announcement (JSON) to this path once serving")
	return cmd
}
