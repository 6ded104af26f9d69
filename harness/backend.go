package harness

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/stampede-sim/stampede/scenarios"
)

// Backend is an API server the run talks to: the in-memory fakeapi, a local
// kube-apiserver with etcd built from source, a kind cluster, or an existing
// cluster. A Backend is started once per mode (fresh state) and stopped at
// the end of it.
type Backend interface {
	// Name is the backend's name as given on the command line.
	Name() string
	// Start brings the API server up for one mode and returns where it is.
	// It must not return before the server answers requests.
	Start(ctx context.Context, env BackendEnv) (*APIServer, error)
	// Stop stops everything Start started (or deletes what it created on a
	// cluster it does not own) and waits for it.
	Stop(ctx context.Context) error
}

// BackendEnv is what a Backend is told at Start.
type BackendEnv struct {
	// Dir is a directory of the run for this mode's backend files.
	Dir string
	// Mode names the mode; its axes decide the agents' permissions (RBAC
	// or the fake's table).
	Mode scenarios.Mode
	// Axes are the mode's; zero means the axes of the preset Mode names.
	Axes scenarios.Axes
	// Scenario is the scenario being run.
	Scenario *scenarios.Scenario
	// Users are the identities the run needs: admin (the harness and its
	// probe), operator (the control plane), and one user per simulated node
	// named "node:<node name>" (none in xds mode).
	Users []User
	// Executable is the stampede binary, for backends that run
	// `stampede fakeapi` or `stampede etcd` as child processes.
	Executable string
	Log        *slog.Logger
}

// User roles.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleAgent    = "agent"
	RoleMesh     = "mesh"
)

// User is one identity and its bearer token.
type User struct {
	Name  string
	Role  string
	Token string
}

// APIServer is a started backend.
type APIServer struct {
	// URL is the API server's base URL.
	URL string
	// CAFile is the PEM file that verifies the server's certificate
	// (empty for plain HTTP).
	CAFile string
	// Kubeconfig is an admin kubeconfig for kubectl and for users.
	Kubeconfig string
	// Processes are the processes to measure (name -> PID), for example
	// "apiserver" and "etcd".
	Processes map[string]int
	// MetricsURLs are /metrics endpoints to scrape by component name
	// ("apiserver", "etcd"); they accept the admin token.
	MetricsURLs map[string]string
	// Facts are recorded in results: for example "etcd.fsync": "true",
	// "apf": "enabled", "kubernetes.version": "v1.36.3".
	Facts map[string]string
	// Tokens, when not nil, are the bearer tokens the backend issued in
	// place of those in BackendEnv.Users, by user name (the kubeconfig and
	// kind backends get them from the TokenRequest API for ServiceAccounts;
	// TokenFile holds the same). Nil means BackendEnv.Users' tokens are
	// valid as given.
	Tokens map[string]string
	// ObjectLabels, when not empty, must be put on every object the run
	// creates on this server (the kubeconfig backend's clean-up deletes
	// exactly the objects carrying them).
	ObjectLabels map[string]string
}

// modeSpec is the mode's name and axes: Axes, or the preset's.
func (e BackendEnv) modeSpec() (scenarios.ModeSpec, error) {
	if e.Axes != (scenarios.Axes{}) {
		return scenarios.ModeSpec{Name: e.Mode, Axes: e.Axes}, nil
	}
	if p, ok := scenarios.Preset(e.Mode); ok {
		return p, nil
	}
	return scenarios.ModeSpec{}, fmt.Errorf("mode %q: no axes given and no preset of that name", e.Mode)
}
