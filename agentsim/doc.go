// Package agentsim simulates Cilium node agents: one Agent per simulated
// node, each with its own client, connection, rate limiter and watches, and a
// Fleet that runs many agents in one process. Agents put on the API server
// and the kvstore the load a cilium-agent puts there and do the same work
// with what they receive, feeding a datapath.
//
// Lifecycle: a Fleet is started with Run(ctx) and stops when ctx ends,
// waiting for every agent goroutine.
package agentsim
