// Package policykey is the vocabulary the policy side of the project
// shares: Key, one allowed (remote identity, destination port, protocol)
// of a local endpoint's ingress policy, the one order of keys (Compare),
// and the operations on allowed sets kept in that order, sorted and
// without repeats: Sorted, Equal, Merge, Diff, DiffCount and Apply.
//
// The policy resolver (internal/policy) produces such sets, the agents
// compare them to skip unchanged endpoints, the datapath writes the
// difference between an endpoint's old and new set, and the ground truth
// (internal/truth) digests them; all of them use this package so that the
// order and the set operations cannot drift apart.
//
// Everything here is pure and allocation-conscious: a set is a plain
// []Key, functions never modify their inputs, and Merge and Sorted return
// an input itself where that is already the answer, so callers must treat
// sets as immutable once shared.
package policykey
