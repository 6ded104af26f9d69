package results

import (
	"fmt"
	"strconv"
	"time"
)

// What answered the API requests of a run (APIServer.Model).
const (
	// ModelKubeAPIServer: a real kube-apiserver with its etcd (the local,
	// kind and kubeconfig backends).
	ModelKubeAPIServer = "kube-apiserver"
	// ModelCapacity: the fake API server serving against a capacity model of
	// a kube-apiserver (APIServer.Capacity says which).
	ModelCapacity = "capacity"
	// ModelNone: the fake API server without a capacity model; its latency
	// and CPU are the simulator's own, not a kube-apiserver's.
	ModelNone = "none"
)

// APIServer says which API server a run's API figures (probe and server
// latency, API server CPU, 429s, watch delivery) stand for. Two runs whose
// APIServer differs are not comparable.
type APIServer struct {
	// Backend is fake, local, kind or kubeconfig (as Backend.Name).
	Backend string `json:"backend"`
	// Model is ModelKubeAPIServer, ModelCapacity or ModelNone.
	Model string `json:"model"`
	// KubernetesVersion is the real kube-apiserver's version (model
	// kube-apiserver), when the backend reported it.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Capacity is the capacity model (model capacity only).
	Capacity *APICapacity `json:"capacity,omitempty"`
}

// APICapacity is the capacity model the fake API server served against: a
// kube-apiserver and its etcd of Cores cores of the calibration machine,
// with the costs of the calibration profile.
type APICapacity struct {
	// Cores is the scenario's api.capacity.cores.
	Cores float64 `json:"cores"`
	// Profile is the calibration profile's name.
	Profile string `json:"profile"`
	// KubeAPIServerVersion and EtcdVersion are what the profile was
	// measured against.
	KubeAPIServerVersion string `json:"kubeAPIServerVersion"`
	EtcdVersion          string `json:"etcdVersion,omitempty"`
	// Machine is the calibration machine: a core of capacity is one of its
	// cores.
	Machine CalibrationMachine `json:"machine"`
	// MeasuredAt is when the profile was measured.
	MeasuredAt time.Time `json:"measuredAt"`
}

// CalibrationMachine is the machine a capacity profile was measured on.
type CalibrationMachine struct {
	CPUModel string `json:"cpuModel"`
	Cores    int    `json:"cores"`
}

// APIServerOf is what r's API figures stand for: Run.APIServer, or for
// results written before it was recorded, what the backend implies (the
// fake had no capacity model then).
func APIServerOf(r *Results) APIServer {
	if a := r.Run.APIServer; a != nil {
		return *a
	}
	a := APIServer{Backend: r.Run.Backend.Name, Model: ModelKubeAPIServer, KubernetesVersion: r.Run.Backend.Facts["kubernetes.version"]}
	if a.Backend == "fake" {
		a.Model, a.KubernetesVersion = ModelNone, ""
	}
	return a
}

// Describe is a's one-line account, for captions and tables: for example
// "fake with capacity 8 cores of Intel Xeon (profile kube-apiserver-v1.36.3,
// measured 2026-12-03 on a 2-core machine) — modelled kube-apiserver
// v1.36.3 + etcd".
func (a APIServer) Describe() string {
	switch a.Model {
	case ModelNone:
		return a.Backend + " without capacity model — the simulator's own latency, not a kube-apiserver's"
	case ModelCapacity:
		c := a.Capacity
		if c == nil {
			return a.Backend + " with a capacity model (not recorded which)"
		}
		cpu := c.Machine.CPUModel
		if cpu == "" {
			cpu = "an unnamed CPU"
		}
		return fmt.Sprintf("%s with capacity %s cores of %s (profile %s, measured %s on a %d-core machine) — modelled kube-apiserver %s + etcd",
			a.Backend, FormatCores(c.Cores), cpu, c.Profile, c.MeasuredAt.UTC().Format(time.DateOnly), c.Machine.Cores, c.KubeAPIServerVersion)
	case ModelKubeAPIServer:
		v := a.KubernetesVersion
		if v == "" {
			v = "(version unknown)"
		}
		return fmt.Sprintf("kube-apiserver %s + etcd (%s backend)", v, a.Backend)
	}
	return fmt.Sprintf("%s (model %q)", a.Backend, a.Model)
}

// Short is a's account in a few words, for naming it beside another; a
// capacity profile is named with the moment it was measured.
func (a APIServer) Short() string {
	switch {
	case a.Model == ModelCapacity && a.Capacity != nil:
		return fmt.Sprintf("%s with capacity %s cores (profile %s measured %s)", a.Backend, FormatCores(a.Capacity.Cores), a.Capacity.Profile, a.Capacity.MeasuredAt.UTC().Format(time.RFC3339))
	case a.Model == ModelNone:
		return a.Backend + " without capacity model"
	}
	return a.Describe()
}

// Comparable reports whether figures measured against a and b can be
// compared: the same backend and model and, for a capacity model, the same
// cores and the same profile (name and measurement).
func (a APIServer) Comparable(b APIServer) bool {
	if a.Backend != b.Backend || a.Model != b.Model {
		return false
	}
	if (a.Capacity == nil) != (b.Capacity == nil) {
		return false
	}
	if a.Capacity == nil {
		return true
	}
	ca, cb := a.Capacity, b.Capacity
	return ca.Cores == cb.Cores && ca.Profile == cb.Profile && ca.MeasuredAt.Equal(cb.MeasuredAt)
}

// FormatCores prints a number of cores without trailing zeros (8, 0.5).
func FormatCores(c float64) string {
	return strconv.FormatFloat(c, 'f', -1, 64)
}

// checkAPIServer applies the rules between run.apiServer's fields that the
// JSON Schema does not express.
func (r *Results) checkAPIServer() []string {
	a := r.Run.APIServer
	if a == nil {
		return nil
	}
	var p []string
	if r.Run.Backend.Name != "" && a.Backend != r.Run.Backend.Name {
		p = append(p, fmt.Sprintf("/run/apiServer/backend: %q, but run/backend/name is %q", a.Backend, r.Run.Backend.Name))
	}
	fake := a.Backend == "fake"
	switch {
	case a.Model == ModelKubeAPIServer && fake:
		p = append(p, "/run/apiServer/model: kube-apiserver, but the backend is the fake (want capacity or none)")
	case a.Model != ModelKubeAPIServer && !fake:
		p = append(p, fmt.Sprintf("/run/apiServer/model: %s, but backend %s is a kube-apiserver (want kube-apiserver)", a.Model, a.Backend))
	}
	switch {
	case a.Model == ModelCapacity && a.Capacity == nil:
		p = append(p, "/run/apiServer/capacity: missing for model capacity")
	case a.Model != ModelCapacity && a.Capacity != nil:
		p = append(p, fmt.Sprintf("/run/apiServer/capacity: present for model %s (only model capacity has one)", a.Model))
	}
	if a.KubernetesVersion != "" && a.Model != ModelKubeAPIServer {
		p = append(p, fmt.Sprintf("/run/apiServer/kubernetesVersion: present for model %s (a capacity model's version is capacity/kubeAPIServerVersion)", a.Model))
	}
	return p
}
