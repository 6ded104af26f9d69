package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/controlplane/mesh"
	"github.com/stampede-sim/stampede/internal/daemon"
)

func newMeshCmd(g *globals) *cobra.Command {
	var (
		rc                      mesh.RunConfig
		source, api, caFile     string
		token, tokenFile, etcds string
	)
	cmd := &cobra.Command{
		Use:   "mesh",
		Short: "Run one ClusterMesh etcd mirror replica (the mesh read path)",
		Long: `Run one replica of the ClusterMesh etcd mirror until interrupted: watch
CiliumIdentities, CiliumEndpointSlices (--source ces) or CiliumEndpoints
(--source cep), and CiliumNodes on the API server and write them into the
replica's own etcd (--etcd, started with "stampede etcd") under Cilium's
clustermesh key layout, as a clustermesh-apiserver replica does. Once it
serves, it writes a JSON announcement to --ready-file and stdout with
endpoint "metrics" and extra "replica", "source", "cluster" and "etcd".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if token, err = apiToken(api, token, tokenFile); err != nil {
				return err
			}
			switch mesh.Source(source) {
			case mesh.SourceCES, mesh.SourceCEP:
			default:
				return fmt.Errorf("--source: %q is not ces or cep", source)
			}
			if rc.Replica < 0 {
				return fmt.Errorf("--replica: %d is negative", rc.Replica)
			}
			for _, u := range strings.Split(etcds, ",") {
				if u = strings.TrimSpace(u); u != "" {
					rc.Etcd = append(rc.Etcd, u)
				}
			}
			if len(rc.Etcd) == 0 {
				return errors.New("--etcd: the replica's etcd client URL is required")
			}
			rc.Source = mesh.Source(source)
			rc.REST = &rest.Config{Host: api, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}}
			rc.Log = log
			rc.Stdout = cmd.OutOrStdout()
			return mesh.Run(cmd.Context(), rc)
		},
	}
	f := cmd.Flags()
	f.IntVar(&rc.Replica, "replica", 0, "index of this replica (metric label)")
	f.StringVar(&etcds, "etcd", "", "the replica's etcd client URL (required)")
	f.StringVar(&source, "source", "", "endpoint source: ces (CiliumEndpointSlices) or cep (CiliumEndpoints) (required)")
	f.StringVar(&rc.Cluster, "cluster", "default", "Cilium cluster name in node keys and sync canaries")
	f.StringVar(&api, "api-url", "", "Kubernetes API server URL (required)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the API server's CA")
	f.StringVar(&token, "token", "", "bearer token for the API server")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token for the API server (one token)")
	f.StringVar(&rc.MetricsListen, "metrics-listen", daemon.DefaultMetricsListen, "metrics and pprof listen address")
	f.StringVar(&rc.ReadyFile, "ready-file", "", "write the JSON announcement here once serving")
	_ = cmd.MarkFlagRequired("etcd")
	_ = cmd.MarkFlagRequired("source")
	_ = cmd.MarkFlagRequired("api-url")
	return cmd
}
