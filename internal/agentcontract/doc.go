// Package agentcontract is everything the harness may know about the
// simulated agents, so that the harness and the agents (package agentsim)
// depend on this package and not on each other:
//
//   - the status report an agent shard serves at StatusPath and the
//     harness polls (Status, DecodeStatuses), and the PolicyOverflowMarker
//     an agent appends to its policy digest when its datapath refused a
//     policy; the report's Work, what the agent received, holds and
//     did, which the harness aggregates per mode;
//   - the key layout of Cilium's kvstore identity allocator and ipcache,
//     which kvstore-mode agents write and the harness's kvstore probe reads
//     (KVIDPrefix and its siblings);
//   - the key layout and values of the ClusterMesh etcd a mesh replica
//     (controlplane/mesh) writes and mesh-read-path agents read
//     (KVNodesPrefix, KVSyncedPrefix, IPIdentityPair, NodeValue,
//     ClusterConfig), so that writer and readers share one definition.
//
// An agent's report carries more fields than Status (its counters); those
// are for people and logs, and the harness ignores them. A test in
// agentsim encodes an agent's report and decodes it here, so the two sides
// cannot drift apart silently.
//
// The package holds constants, the report's types and one pure function.
package agentcontract
