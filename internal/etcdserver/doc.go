// Package etcdserver runs a single-member etcd server in-process with
// go.etcd.io/etcd/server/v3/embed, for `stampede etcd`: the kvstore of the
// kvstore mode and the storage of the local kube-apiserver.
//
// Everything listens on loopback ephemeral ports: the client URL (gRPC and
// HTTP, which also serves etcd's own /metrics and /health) and a separate
// metrics URL that serves /metrics and /debug/pprof. fsync is on by default;
// Config.UnsafeNoFsync turns it off and Server.Fsync reports the setting so
// that results can say so.
//
// Lifecycle: Start returns a running Server; Close stops it and waits for
// its goroutines. Run is the whole `stampede etcd` process: start, announce
// the endpoints with internal/ready, serve until the context ends, close.
//
// etcd registers its metrics with the prometheus default registerer (it has
// no option for another), so the metrics URL serves the default gatherer;
// run one Server per process.
package etcdserver
