package scenarios

import "fmt"

// validateAgentK8s checks the knobs of the agents' Kubernetes path: their
// watches and the CiliumEndpoint synchroniser.
func (s *Scenario) validateAgentK8s(l *errs) {
	positive(l, "agent.endpointSyncInterval", s.Agent.EndpointSyncInterval)
	if !s.Agent.DisableEndpointCRD {
		return
	}
	// Without the CRD, Cilium's agents neither write nor watch endpoints
	// (pkg/k8s/synced/crd.go agentCRDResourceNames leaves CiliumEndpoint
	// and CiliumEndpointSlice out), and since v1.17 they no longer fall
	// back to watching every pod of the cluster (cilium/cilium#35741): an
	// agent that takes identities from Kubernetes would never learn where
	// remote pods are. Only kvstore agents have another source.
	for i, m := range s.Modes {
		switch m {
		case ModeCRD, ModeCES, ModeOperator:
			l.add(fmt.Sprintf("modes[%d]", i), "mode %s needs CiliumEndpoints, which agent.disableEndpointCRD turns off: only kvstore (and xds) agents learn remote endpoints elsewhere", m)
		}
	}
}
