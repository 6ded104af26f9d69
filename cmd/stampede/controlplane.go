package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/internal/daemon"
	"github.com/stampede-sim/stampede/scenarios"
)

func newControlplaneCmd(g *globals) *cobra.Command {
	var (
		cfg                           controlplane.Config
		mode, scenario, api, caFile   string
		token, tokenFile, metricsAddr string
	)
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the central control plane of a mode (operator functions or the xDS server)",
		Long: `Run the central control plane of one mode until interrupted:
  crd       identity garbage collection
  ces       identity GC and the CiliumEndpointSlice controller
  kvstore   kvstore identity GC (needs --kvstore)
  operator  identity GC and operator-managed identities
  xds       the xDS server (watches Pods, Namespaces, CiliumNetworkPolicies)
Once it serves, it writes a JSON announcement to --ready-file and stdout with
endpoints "metrics" (/metrics, /debug/pprof, and in xds mode
/debug/xds/push-latency) and, in xds mode, "xds" (the ADS gRPC address).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			sc, err := scenarios.Resolve(scenario)
			if err != nil {
				return fmt.Errorf("--scenario: %w", err)
			}
			if token, err = apiToken(api, token, tokenFile); err != nil {
				return err
			}
			cfg.Mode = scenarios.Mode(mode)
			cfg.Scenario = sc
			cfg.REST = &rest.Config{Host: api, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}}
			cfg.MetricsListen = metricsAddr
			cfg.Logger = log
			cfg.Stdout = cmd.OutOrStdout()
			return controlplane.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "", "mode: crd, ces, kvstore, operator, xds, ces-slim, mesh or a mode the scenario names (its axes come from the scenario; required)")
	f.StringVar(&scenario, "scenario", "", "built-in scenario name or scenario file (required)")
	f.StringVar(&api, "api-url", "", "Kubernetes API server URL (required)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the API server's CA")
	f.StringVar(&token, "token", "", "bearer token for the API server")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token for the API server (one token)")
	f.StringSliceVar(&cfg.KVStore, "kvstore", nil, "etcd client URLs, comma separated (kvstore mode)")
	f.StringVar(&cfg.XDSListen, "xds-listen", "127.0.0.1:0", "xDS gRPC listen address (xds mode)")
	f.StringVar(&metricsAddr, "metrics-listen", daemon.DefaultMetricsListen, "metrics and pprof listen address")
	f.StringVar(&cfg.ReadyFile, "ready-file", "", "write the JSON announcement here once serving")
	_ = cmd.MarkFlagRequired("mode")
	_ = cmd.MarkFlagRequired("scenario")
	_ = cmd.MarkFlagRequired("api-url")
	return cmd
}

// apiToken checks the API server flags shared by the daemons that talk to
// it (--api-url, --token, --token-file) and returns the bearer token.
func apiToken(api, token, tokenFile string) (string, error) {
	if api == "" {
		return "", errors.New("--api-url: the API server URL is required")
	}
	if token != "" && tokenFile != "" {
		return "", errors.New("--token and --token-file: give one, not both")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return token, nil
}
