// Package truth defines the convergence digests that agents report and the
// harness compares against the ground truth. Both sides build them with the
// functions here, so they cannot drift.
//
// Two digests per node:
//
//   - IPCache: the set of (pod IP, identity labels) the node knows. Labels,
//     not numeric IDs, because duplicate identities give one label set
//     several IDs.
//   - Policy: for every local endpoint (by IP), the set of (remote identity
//     labels, port, protocol) its ingress policy allows, counting only label
//     sets that some ipcache entry carries: identities no IP maps to cannot
//     be the source of a packet, so they do not change a verdict (this keeps
//     stale identities that await garbage collection out of the digest).
//     An endpoint that no rule selects contributes one AllowAll entry.
//
// Digests are order-independent sums of 64-bit mixes, so agents update them
// incrementally. Their string form is "<sum hex>/<count>".
package truth
