// Package harness wires a run together: it starts the API server backend,
// the kvstore, the control plane and the agent shards as separate processes,
// executes the scenario timeline, probes and samples everything, and writes
// results incrementally. It owns every process it starts and stops them all,
// also on Ctrl-C or when a component fails.
package harness
