// Package datapath holds each agent's datapath state behind one
// interface, Datapath: an ipcache (IPv4 prefix -> security identity) and,
// per local endpoint, an ingress policy (the set of allowed (remote
// identity, destination port, protocol) keys; zero fields are wildcards).
//
// Two implementations have the same semantics and the same update
// counting:
//
//   - bpf keeps the state in real BPF maps (cilium/ebpf) read by the tc
//     program of package bpf: an LPM trie ipcache, an endpoints hash (IP ->
//     endpoint id) and one policy hash per agent keyed by (endpoint id,
//     identity, port, protocol). Updates use BPF_MAP_UPDATE_BATCH and
//     BPF_MAP_DELETE_BATCH where the kernel has them. Check runs the real
//     program on a crafted packet with BPF_PROG_TEST_RUN.
//   - mem keeps it in Go maps and does the program's lookups in Go. It needs
//     no privileges.
//
// Open picks one from Config.Kind; "auto" decides once per process, by
// creating a tiny map and then loading the program with tiny maps, and logs
// one line saying which it chose and why; every later auto Open in the
// process gets the same kind.
// Size the maps with SizeFor from the scenario (pods, local endpoints,
// keys per endpoint); an update beyond them fails with ErrFull and changes
// nothing.
//
// Both implementations keep the state in Go as well (for bpf, a shadow of
// the kernel maps): ReplacePolicy writes only the difference between the
// old and new allowed set, writes that change nothing are skipped, and
// Digest is an O(1) order-independent hash of the state that the harness
// compares with ComputeDigest of the ground truth. The bpf implementation
// also has KernelDigest() (Digest, error), reached with a type assertion,
// which reads the kernel maps back to prove they hold what the shadow says.
//
// Why one policy hash per agent rather than one map per endpoint as in
// Cilium (measured by BenchmarkPolicyLayout, 100 endpoints x 500 keys):
//   - a map per endpoint is 20,000 maps and file descriptors for 200 agents
//     x 100 endpoints; sized like Cilium's preallocated 16,384-entry default
//     they cost 1.3 MB each (131 MB per agent, 26 GB for 200 agents);
//   - a hash-of-maps keyed by endpoint id needs no descriptor per inner map
//     once inserted, and costs about the same memory (5.3 MB of memlock),
//     but adding an endpoint, or swapping a new policy in atomically, is a
//     map-in-map update, and each one from user space waits for an RCU
//     grace period: 10-40 ms on this loaded 2-core machine, so 1-4 s per
//     agent to install 100 endpoints;
//   - one non-preallocated hash keyed by (endpoint id, identity, port,
//     protocol) costs 5.0 MB, holds one descriptor and takes batched
//     updates (0.2 s for the 50,000 keys). Its cost: a policy replacement is
//     a diff (deletes, then adds), not an atomic swap.
//
// Concurrency and lifecycle: a Datapath is safe for concurrent use. The
// caller that opens a Datapath closes it; Close releases every map and
// program file descriptor and is idempotent; every other method returns
// ErrClosed afterwards.
package datapath
