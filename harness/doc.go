// Package harness wires a run together: it starts the API server backend,
// the kvstore, the control plane and the agent shards as separate processes,
// executes the scenario timeline, probes and samples everything, and writes
// results incrementally. It owns every process it starts and stops them all,
// also on Ctrl-C or when a component fails.
//
// Run is the entry point (`stampede run`). For each mode it (mode.go,
// one step per method of modeRun):
//
//  1. starts the Backend (FakeBackend runs `stampede fakeapi`) with one
//     token per user: admin (the harness), operator (the control plane) and
//     one agent user per node (none in xds mode), and on the mesh read path
//     the clustermesh-apiserver's user;
//  2. in kvstore mode starts `stampede etcd`; on the mesh read path
//     controlPlane.mesh.replicas pairs of `stampede etcd --ephemeral` and
//     `stampede mesh`, waiting for every replica's sync canaries (mesh.go);
//     then `stampede controlplane`
//     and the agent shards (`stampede agents --shard i/n`), each through
//     internal/proc (own process group, log file under <out>/<mode>/, ready
//     announcement), and watches them: one that exits fails the mode;
//  3. runs the Timeline (setup, waitConverged, observe, relabel, scale,
//     deletePods, scaleAll) against the API server as admin, comparing the agents'
//     digests (GET /agents of every shard) with internal/truth;
//  4. meanwhile a Probe sends GET/LIST/PATCH requests at a constant rate on
//     its own connection, a KVProbe does put/get on the kvstore, on the
//     mesh read path a MeshProbe times probe CiliumIdentities from the API
//     server's answer to their keys in every replica (meshprobe.go), and the
//     Measurer samples /proc and scrapes every /metrics endpoint once per
//     interval into the mode's series (results.Series, named by the
//     results.Series* constants);
//  5. lists CiliumIdentities (duplicates), summarises the mode, stops every
//     process (agents, control plane, kvstore, backend), checks that no
//     child is left, and records the mode's status.
//
// results.json (the reports/results schema) is rewritten as the run goes, so an
// interrupted run keeps what it measured, marked incomplete; report.md,
// report.html and plots/ are rendered at the end. RunAtNodes runs a
// scenario resized to a node count, for capacity sweeps.
//
// Goroutines: Run owns the probes, the sampler and the component watchers
// of a mode and waits for them before the mode ends.
package harness
