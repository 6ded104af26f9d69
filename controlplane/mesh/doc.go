// Package mesh is the ClusterMesh etcd mirror of one replica, as a
// clustermesh-apiserver replica runs it (cilium/cilium
// clustermesh-apiserver/clustermesh: synchronizer.go, converters.go; the
// read path of CFP-44774, "Cilium Control Plane at Scale"): informers on
// the API server for CiliumIdentities, CiliumEndpointSlices or
// CiliumEndpoints (Config.Source), and CiliumNodes, whose events become
// keys in the replica's own etcd under Cilium's clustermesh key layout
// (internal/agentcontract): identities, ipcache entries (one per address,
// one primary owner per address) and nodes.
//
// Writes go through one syncStore per prefix, a model of Cilium's
// WorkqueueSyncStore: one worker, one key at a time, repeated updates of a
// key coalesced, every key on the replica's lease. After each resource's
// first list, once its keys are written, the prefix's sync canary;
// at start the cluster configuration; every minute the heartbeat key.
// Each replica fills its own etcd; replicas do not talk to each other.
//
// Not modelled: global services (Stampede has none) and namespace
// filtering by the clustermesh.cilium.io/global annotation (every
// namespace is exported, as unannotated ones are).
//
// Lifecycle: New validates the Config and registers the metrics; Run
// grants the lease, writes, and returns when its context ends (the lease
// is left to expire: readers keep the keys until they move to another
// replica) or when the lease is lost. The caller owns
// and closes the etcd client. Run (run.go) is the whole `stampede mesh`
// process, served by internal/daemon.
package mesh
