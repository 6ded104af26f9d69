// Package daemon is the setup every long-running stampede subcommand
// shares (`stampede agents`, `stampede controlplane`, `stampede etcd`): a
// Prometheus registry with the Go runtime and process collectors, one
// diagnostics HTTP server on loopback (/metrics, /debug/pprof/ and the
// component's own handlers), the internal/ready announcement the harness
// waits for, and running the component's parts until the context ends.
//
// Lifecycle: Run listens first, so that a bad address fails before anything
// starts; then it serves the diagnostics, starts every Part in a goroutine
// of its own and announces the endpoints. It returns when its context ends
// or any part returns (a part that fails takes the process down with it,
// as a crashed controller would), after it has cancelled the parts, shut
// the diagnostics server down and waited for every goroutine it started.
// The caller owns what it built before Run (an etcd, a fleet of agents)
// and closes it after Run returns.
//
// `stampede fakeapi` is the one server process that does not use Run: it
// is itself an HTTP server and serves /metrics and /debug/pprof/ on its API
// port.
package daemon
