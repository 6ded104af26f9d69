// Package agentsim simulates Cilium node agents: one Agent per simulated
// node, each with its own API client, TCP connection, client-side rate
// limiter (Cilium's QPS/burst defaults from the scenario) and watches, and a
// Fleet that runs the agents of one shard (nodes with index % n == i) in one
// process. Agents put on the API server and the kvstore the load a
// cilium-agent puts there and do the same work with what they receive:
//
//   - crd: list+watch what the release's cilium-agent watches (watches.go:
//     Namespaces, own Pods, own Node and CiliumNode, Services,
//     EndpointSlices, the policy kinds, CiliumNodes, CiliumIdentities and
//     CiliumEndpoints); allocate identities by creating CiliumIdentities
//     with a random free ID and no lock (agents race and create
//     duplicates, which are counted); keep a CiliumEndpoint per local pod
//     as Cilium's endpoint synchroniser does (ciliumendpoint.go: GET, then
//     create with the pod's labels and owner; JSON patches that test the
//     uid; nothing written while the status is unchanged).
//   - ces: as crd, with CiliumEndpointSlices instead of CiliumEndpoints.
//   - kvstore: identities and ipcache in etcd (master key id/<ID>, per-node
//     value keys with a lease, a lock on each first local use of a label
//     set held on a lock session with its own short lease, ipcache entries
//     with a lease), watched by prefix; CiliumEndpoints are still written
//     (unless agent.disableEndpointCRD) but, as since Cilium 1.17, neither
//     they nor CiliumNodes nor CiliumIdentities are watched.
//   - operator: as crd, but the operator creates identities; agents wait.
//   - xds: no API server connection and no credentials; the agent is the
//     Sink of an agentsim/xdsclient ADS stream.
//
// Received objects are decoded in one pass into slim types that keep only
// what the agent uses. Every agent reads its own streams, but the agents
// of a Fleet share the decoding of watch frames of unfiltered watches
// (everything but the agent's own pods, Node and CiliumNode): the API server sends every watcher the same bytes
// for an event, so the first agent to read a frame decodes it and the
// others reuse the read-only result (frameCache). A shard's agents thus
// spend less CPU on decoding than as many cilium-agents would.
//
// Each agent keeps an identity cache, an ipcache (IP -> identity), a
// selector cache and per-endpoint policies, each a subsystem of its own
// type and file that the Agent composes under one lock (the Agent's doc
// says why and gives the lock order), and writes them to its
// datapath.Datapath through a queue applied by its own writer goroutine.
// It reports convergence digests built with internal/truth, and what it
// received, holds and did (agentcontract.Work, counted with atomics in
// agentWork at the watches, the policy regeneration and the datapath
// writer): the figures that carry over to a cilium-agent, unlike the
// shard's CPU and memory.
//
// Lifecycle: New builds a Fleet (nothing connects); Run(ctx) runs every
// agent until ctx ends and waits for all their goroutines; each agent
// closes its own connections, kvstore session (revoking its lease) and
// datapath. Serve wraps a Fleet in a process: /metrics, /debug/pprof/,
// GET /agents and the ready announcement ("metrics" endpoint).
package agentsim
