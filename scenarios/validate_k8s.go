package scenarios

// validateAgentK8s checks the knobs of the agents' Kubernetes path: their
// watches and the CiliumEndpoint synchroniser.
func (s *Scenario) validateAgentK8s(l *errs) {
	positive(l, "agent.endpointSyncInterval", s.Agent.EndpointSyncInterval)
	// agent.disableEndpointCRD against each mode's endpoints is checked
	// with the modes (validateModeRelease).
}
