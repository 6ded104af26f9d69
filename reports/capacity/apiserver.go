package capacity

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// APIServer is the API server a group of runs measured against: the
// backend and, for the fake, the size of its capacity model. Runs are
// fitted per API server, since latency depends on it.
type APIServer struct {
	// Backend is fake, local, kind or kubeconfig.
	Backend string
	// Cores is the fake's api.capacity.cores (0: no capacity model, or a
	// backend other than the fake).
	Cores float64
	// Profile is the fake's calibration profile as the scenario named it
	// ("" is the default shipped profile).
	Profile string
}

// apiServerOf reads the API server of a run from run.apiServer, or, for
// results written before it was recorded, from the scenario the run
// recorded or the fake backend's "capacity" fact.
func apiServerOf(r *results.Results) APIServer {
	a := APIServer{Backend: r.Run.Backend.Name}
	if a.Backend != string(scenarios.BackendFake) {
		return a // the capacity model is the fake's alone
	}
	if ra := r.Run.APIServer; ra != nil {
		switch {
		case ra.Model == results.ModelNone:
			return a
		case ra.Model == results.ModelCapacity && ra.Capacity != nil:
			a.Cores, a.Profile = ra.Capacity.Cores, ra.Capacity.Profile
			return a
		}
	}
	if sc := r.Run.EffectiveScenario; sc != nil {
		if c := sc.API.Capacity; c != nil {
			a.Cores, a.Profile = c.Cores, c.Profile
		}
		return a
	}
	// The fake backend records "<cores> cores of <cpu> ..., profile <name>".
	if f := r.Run.Backend.Facts["capacity"]; f != "" && !strings.HasPrefix(f, "none") {
		first, _, _ := strings.Cut(f, " ")
		if v, err := strconv.ParseFloat(first, 64); err == nil && v > 0 {
			a.Cores = v
		}
		if _, p, ok := strings.Cut(f, ", profile "); ok {
			a.Profile = p
		}
	}
	return a
}

// ModelsKubeAPIServer reports whether latency measured against a is a
// kube-apiserver's: a real one, or the fake with a capacity model. The fake
// without one answers as fast as the machine's shared cores let it, so its
// latency is the simulator's and says nothing about a control plane.
func (a APIServer) ModelsKubeAPIServer() bool {
	switch scenarios.BackendType(a.Backend) {
	case scenarios.BackendFake:
		return a.Cores > 0
	case scenarios.BackendLocal, scenarios.BackendKind, scenarios.BackendKubeconfig:
		return true
	}
	return false
}

// Label is a short name for tables: "4 cores", "no capacity model",
// "local kube-apiserver".
func (a APIServer) Label() string {
	switch {
	case a.Backend == string(scenarios.BackendFake) && a.Cores > 0:
		return strconv.FormatFloat(a.Cores, 'g', -1, 64) + " cores"
	case a.Backend == string(scenarios.BackendFake):
		return "no capacity model"
	case a.Backend == "":
		return "unknown API server"
	}
	return a.Backend + " kube-apiserver"
}

// String describes a for prose.
func (a APIServer) String() string {
	switch {
	case a.Backend == string(scenarios.BackendFake) && a.Cores > 0:
		p := a.Profile
		if p == "" {
			p = "the default profile"
		}
		return fmt.Sprintf("fake API server with the capacity of a %s-core kube-apiserver and etcd (%s)", strconv.FormatFloat(a.Cores, 'g', -1, 64), p)
	case a.Backend == string(scenarios.BackendFake):
		return "fake API server without a capacity model"
	}
	return a.Label()
}

func compareAPIServers(a, b APIServer) int {
	return cmp.Or(cmp.Compare(a.Backend, b.Backend), cmp.Compare(a.Cores, b.Cores), cmp.Compare(a.Profile, b.Profile))
}

// AgentsUseAPIServer reports whether a mode's agents talk to the API
// server. In xds mode they are read-only clients of the xDS control plane
// and never do (README, Modes), so the API server's load under xds does not
// grow with the agents and no API breaking point can come from them.
func AgentsUseAPIServer(m scenarios.Mode) bool {
	return m != scenarios.ModeXDS
}
