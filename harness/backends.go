package harness

import (
	"context"
	"fmt"
	"strings"

	"github.com/stampede-sim/stampede/scenarios"
)

// ParseBackend turns a --api value (fake, local, kind, kubeconfig=PATH)
// into a Backend. Backends this build cannot provide yet are returned as an
// unavailableBackend, so that every mode is reported as skipped with the
// reason and the rest of the run still happens.
func ParseBackend(spec string) (Backend, error) {
	name, arg, _ := strings.Cut(spec, "=")
	switch scenarios.BackendType(name) {
	case scenarios.BackendFake:
		if arg != "" {
			return nil, fmt.Errorf("--api fake takes no argument, got %q", spec)
		}
		return &FakeBackend{}, nil
	case scenarios.BackendLocal, scenarios.BackendKind:
		if arg != "" {
			return nil, fmt.Errorf("--api %s takes no argument, got %q", name, spec)
		}
		return unavailableBackend{name: name, reason: "backend " + name + " is not built into this stampede yet"}, nil
	case scenarios.BackendKubeconfig:
		if arg == "" {
			return nil, fmt.Errorf("--api kubeconfig needs a path: kubeconfig=PATH")
		}
		return unavailableBackend{name: name, reason: "backend kubeconfig is not built into this stampede yet"}, nil
	}
	return nil, fmt.Errorf("--api: unknown backend %q (want fake, local, kind or kubeconfig=PATH)", spec)
}

// unavailableBackend cannot start; every mode using it is skipped.
type unavailableBackend struct{ name, reason string }

func (b unavailableBackend) Name() string { return b.name }
func (b unavailableBackend) Start(context.Context, BackendEnv) (*APIServer, error) {
	return nil, &SkipError{Reason: b.reason}
}
func (b unavailableBackend) Stop(context.Context) error { return nil }
