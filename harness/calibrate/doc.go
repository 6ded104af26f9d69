// Package calibrate measures what a real kube-apiserver and its etcd spend
// per request and per watch event on this machine, fits the cost
// coefficients of the fake API server's capacity model (package
// internal/capacity) to it, and validates the model against kube-apiserver.
//
// Run (`stampede calibrate`) starts harness.LocalBackend: kube-apiserver
// (built by `make tools`) and etcd, which runs as its own process (`stampede
// etcd`, a child of the stampede binary), so /proc accounts the two
// separately from the harness. After an idle baseline it sends a fixed,
// seeded Workload as the admin user over its own HTTP/1.1 connections:
// for pods, namespaces, CiliumIdentities and CiliumEndpoints in two object
// sizes, creates up to each list size, lists of every size, gets, updates,
// patches and deletes; then CiliumIdentity updates with 0, 1, 25, 50, 100
// and 200 watchers of the collection connected, each watcher on its own
// connection. Every phase is measured as the CPU-seconds (utime+stime from
// /proc/PID/stat) kube-apiserver and etcd spent in it, less the idle
// baseline for its duration. CPU-seconds rather than wall time make the
// figures robust to other load on the machine, though not immune (shared
// caches, SMT siblings, frequency, garbage collection landing in one phase
// or the next). FitModel fits them by weighted least squares with
// standard errors (LeastSquares, a small normal-equation solver) into a
// capacity.Profile.
//
// Validate (`stampede calibrate --validate`) runs a scenario through
// harness.Run twice: on harness.LocalBackend with kube-apiserver and etcd
// moved into a cgroup with a CPU quota of C cores (Confine: cgroup v1 or v2,
// else CPU affinity; the agents, control plane and probe stay outside), and
// on the fake API server with a capacity of C cores and the profile; it
// compares the two per mode (Validation).
//
// Lifecycle: Run and Validate own every process and cgroup they create and
// remove them before they return, also when ctx ends. Goroutines (request
// workers, watchers) belong to the phase that starts them and end with it.
package calibrate
