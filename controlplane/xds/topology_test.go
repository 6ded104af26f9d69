package xds_test

import (
	"fmt"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

// loadTopology records a generated scenario topology in m: its
// namespaces, its pods and its policies rendered into its namespaces (as
// the harness writes them), so tests and benchmarks drive a Model without
// an API server.
func loadTopology(m *xds.Model, s *scenarios.Scenario, t *scenarios.Topology) error {
	var nss []string
	for _, ns := range t.Namespaces {
		m.SetNamespace(ns.Name, ns.Labels)
		nss = append(nss, ns.Name)
	}
	for _, p := range t.Pods {
		if err := m.SetPod(xds.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, IP: p.IP, ServiceAccount: p.ServiceAccount, Labels: p.Labels}); err != nil {
			return err
		}
	}
	for _, cnp := range policy.RenderAll(s.Policies, nss) {
		rules, err := policy.Compile(&cnp)
		if err != nil {
			return fmt.Errorf("policy %s/%s: %w", cnp.Metadata.Namespace, cnp.Metadata.Name, err)
		}
		m.SetPolicy(cnp.Metadata.Namespace, cnp.Metadata.Name, rules)
	}
	return nil
}
