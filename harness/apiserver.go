package harness

import (
	"fmt"

	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// apiServerRecord is what results.json says the run's API figures stand
// for: the fake with the scenario's capacity model (the profile resolved as
// the fake backend resolves it), the fake without one, or a real
// kube-apiserver, whose version facts of a started backend add.
func apiServerRecord(backend string, s *scenarios.Scenario, facts map[string]string) (*results.APIServer, error) {
	a := &results.APIServer{Backend: backend}
	if backend != string(scenarios.BackendFake) {
		a.Model = results.ModelKubeAPIServer
		a.KubernetesVersion = facts["kubernetes.version"]
		return a, nil
	}
	if s == nil || s.API.Capacity == nil {
		a.Model = results.ModelNone
		return a, nil
	}
	c := s.API.Capacity
	p, err := capacity.Resolve(c.Profile)
	if err != nil {
		return nil, fmt.Errorf("api.capacity.profile: %w", err)
	}
	a.Model = results.ModelCapacity
	a.Capacity = &results.APICapacity{
		Cores:                c.Cores,
		Profile:              p.Name,
		KubeAPIServerVersion: p.KubeAPIServerVersion,
		EtcdVersion:          p.EtcdVersion,
		Machine:              results.CalibrationMachine{CPUModel: p.Machine.CPUModel, Cores: p.Machine.Cores},
		MeasuredAt:           p.MeasuredAt,
	}
	return a, nil
}
