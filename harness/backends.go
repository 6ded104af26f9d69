package harness

import (
	"context"
	"fmt"
	"strings"

	"github.com/stampede-sim/stampede/scenarios"
)

// BackendOptions are the command-line choices that configure backends.
type BackendOptions struct {
	// InstallCRDs lets the kubeconfig backend install Stampede's CRDs on a
	// cluster that lacks them (deleted again at the end).
	InstallCRDs bool
}

// ParseBackend turns a --api value (fake, local, kind, kubeconfig=PATH)
// into a Backend with default options.
func ParseBackend(spec string) (Backend, error) {
	return ParseBackendOptions(spec, BackendOptions{})
}

// ParseBackendOptions is ParseBackend with options.
func ParseBackendOptions(spec string, opts BackendOptions) (Backend, error) {
	name, arg, hasArg := strings.Cut(spec, "=")
	switch scenarios.BackendType(name) {
	case scenarios.BackendFake, scenarios.BackendLocal, scenarios.BackendKind:
		if hasArg {
			return nil, fmt.Errorf("--api %s takes no argument, got %q", name, spec)
		}
	}
	switch scenarios.BackendType(name) {
	case scenarios.BackendFake:
		return &FakeBackend{}, nil
	case scenarios.BackendLocal:
		return NewLocalBackend(LocalConfig{}), nil
	case scenarios.BackendKind:
		return NewKindBackend(KindConfig{}), nil
	case scenarios.BackendKubeconfig:
		if arg == "" {
			return nil, fmt.Errorf("--api kubeconfig needs a path: kubeconfig=PATH")
		}
		return NewKubeconfigBackend(KubeconfigConfig{Path: arg, InstallCRDs: opts.InstallCRDs}), nil
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
