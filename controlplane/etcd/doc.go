// Package etcd runs a single-member etcd server in-process with
// go.etcd.io/etcd/server/v3/embed: the body of `stampede etcd`, which the
// harness starts as a process of its own, like fakeapi. It serves as the
// kvstore of kvstore mode (Cilium's central component there, as the
// operator is in the CRD modes) and as the storage of the local backend's
// kube-apiserver.
//
// It lives under controlplane/ because it is one of the real central
// components a run measures, not a helper shared by the other packages.
// It is named after what it runs, not "kvstore": controlplane/kvstoregc.go
// is the operator's identity GC that runs against it, a client, and the
// local backend uses the same server as the API server's storage.
//
// Everything listens on loopback ephemeral ports: the client URL (gRPC and
// HTTP, which also serves etcd's own /metrics and /health) and, under Run,
// the internal/daemon diagnostics server (/metrics, /debug/pprof). fsync is
// on by default; Config.UnsafeNoFsync turns it off and Server.Fsync
// reports the setting so that results can say so.
//
// Lifecycle: Start returns a running Server; Close stops it and waits for
// its goroutines. Run is the whole `stampede etcd` process: Start, then
// internal/daemon.Run (serve diagnostics, announce, wait until the context
// ends or etcd fails), then Close.
//
// etcd registers its metrics with the prometheus default registerer (it has
// no option for another), so the diagnostics server serves the default
// gatherer; run one Server per process.
package etcd
