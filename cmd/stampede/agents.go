package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/agentsim"
	"github.com/stampede-sim/stampede/internal/daemon"
	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/scenarios"
)

func newAgentsCmd(g *globals) *cobra.Command {
	var (
		shard, mode, scenario, apiURL, caFile, tokenFile, token string
		xds, readyFile, metricsListen, memLimit                 string
		kvstore, mesh                                           []string
		nice                                                    int
		meshFallback                                            bool
	)
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "Run one shard of simulated Cilium agents until SIGTERM",
		Long: `Run the simulated agents of one shard: nodes whose index % n == i for
--shard i/n. Each agent has its own API client, connection, rate limiter and
watches (crd, ces, kvstore, operator) or its own xDS stream (xds). Once it
serves it announces the endpoint "metrics" (--metrics-listen, serving
/metrics, /debug/pprof/ and GET /agents, the per-agent status with the
convergence digests) on stdout and in --ready-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			s, err := scenarios.Resolve(scenario)
			if err != nil {
				return err
			}
			i, n, err := parseShard(shard)
			if err != nil {
				return err
			}
			if nice != 0 {
				if err := proc.Renice(nice); err != nil {
					return fmt.Errorf("--nice: %w", err)
				}
			}
			if memLimit != "" {
				q, err := resource.ParseQuantity(memLimit)
				if err != nil || q.Value() <= 0 {
					return fmt.Errorf("--memory-limit: want a positive size such as 3Gi or 3221225472, got %q", memLimit)
				}
				// A soft limit: the garbage collector works harder as the
				// heap nears it, instead of letting it double (GOGC=100)
				// in every shard at once.
				debug.SetMemoryLimit(q.Value())
			}
			cfg := agentsim.Config{
				Scenario: s, Mode: scenarios.Mode(mode), Shard: i, Shards: n,
				XDS: xds, KVStore: kvstore, Mesh: mesh, Log: log,
			}
			if cmd.Flags().Changed("mesh-api-server-fallback") {
				cfg.MeshAPIServerFallback = &meshFallback
			}
			if cfg.Mode != scenarios.ModeXDS {
				if apiURL == "" {
					return fmt.Errorf("--api-url: required in mode %s", mode)
				}
				cfg.REST = &rest.Config{
					Host:          apiURL,
					BearerToken:   token,
					ContentConfig: rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
				}
				if caFile != "" {
					if _, err := os.Stat(caFile); err != nil {
						return fmt.Errorf("--ca-file: %w", err)
					}
					cfg.REST.TLSClientConfig.CAFile = caFile
				}
				if cfg.Tokens, err = agentsim.LoadAgentTokens(tokenFile); err != nil {
					return fmt.Errorf("--token-auth-file: %w", err)
				}
			}
			return agentsim.Serve(cmd.Context(), agentsim.ServeConfig{
				Fleet: cfg, MetricsListen: metricsListen, ReadyFile: readyFile, Stdout: cmd.OutOrStdout(),
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&shard, "shard", "0/1", "this shard as i/n: runs the nodes with index % n == i")
	f.StringVar(&mode, "mode", string(scenarios.ModeCRD), "mode: crd, ces, kvstore, operator, xds, ces-slim, mesh or a mode the scenario names (its axes come from the scenario)")
	f.StringVar(&scenario, "scenario", "relabel-small", "built-in scenario name or scenario file")
	f.StringVar(&apiURL, "api-url", "", "Kubernetes API server URL (all modes but xds)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the CA that signed the API server's certificate")
	f.StringVar(&tokenFile, "token-auth-file", "", `static token file, CSV lines token,user,uid,"group1,group2" (kube-apiserver format); the agent of node X uses the row of user "node:X"; a missing file means no per-agent tokens`)
	f.StringVar(&token, "token", "", "bearer token of agents without a row in --token-auth-file")
	f.StringSliceVar(&kvstore, "kvstore", nil, "etcd client URLs, comma separated (kvstore mode)")
	f.StringSliceVar(&mesh, "mesh", nil, "etcd client URLs of the ClusterMesh mirror replicas in replica order, comma separated (modes with the mesh read path; node k starts on replica k mod n)")
	f.BoolVar(&meshFallback, "mesh-api-server-fallback", true, "while no mesh replica answers, read CiliumIdentities, endpoints and CiliumNodes from the API server (default: the scenario's controlPlane.mesh.apiServerFallback)")
	f.StringVar(&xds, "xds", "", "control plane gRPC address host:port (xds mode)")
	f.StringVar(&readyFile, "ready-file", "", "write the ready announcement (JSON) to this path once serving")
	f.StringVar(&metricsListen, "metrics-listen", daemon.DefaultMetricsListen, "metrics, pprof and /agents listen address")
	f.IntVar(&nice, "nice", 0, "nice value of this process's threads (0-19; higher yields the CPU to the processes under measurement)")
	f.StringVar(&memLimit, "memory-limit", "", "soft memory limit of this process for the Go garbage collector (GOMEMLIMIT), such as 3Gi; empty: none")
	return cmd
}

// parseShard parses "i/n".
func parseShard(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard: want i/n with 0 <= i < n, got %q", s)
	}
	return i, n, nil
}
