package agentcontract

// Work is what one simulated agent received, holds and did, counted from
// its own traffic and state: the figures that carry over to a
// cilium-agent of the same cluster, unlike the simulator's CPU and memory
// (a simulated agent decodes into slim types, shares decoded frames and
// strings with the other agents of its process, and keeps no full
// objects).
//
// Everything but the kernel memory is counted since the agent started,
// which for a harness mode is the whole mode.
type Work struct {
	// Received is what arrived, by resource. Resources are named
	//   - by their Kubernetes resource for lists and watches of the API
	//     server (pods, namespaces, nodes, ciliumnetworkpolicies,
	//     ciliumidentities, ciliumendpoints, ciliumendpointslices);
	//   - kvstore-identities and kvstore-ipcache for the kvstore prefixes
	//     watched in kvstore mode;
	//   - mesh-identities, mesh-ipcache and mesh-nodes for the prefixes of
	//     the ClusterMesh etcd mirror watched on the mesh read path;
	//   - xds-<type> (xds-Identity, xds-IdentityHosts, xds-Policy,
	//     xds-Endpoint) for the xDS resources of xds mode.
	Received map[string]Traffic `json:"received,omitempty"`
	// Cached is what the agent holds now of each resource (same names):
	// the objects its caches keep and their size as received.
	Cached map[string]Holding `json:"cached,omitempty"`
	// Identities is the number of security identities the agent knows.
	Identities int `json:"identities"`
	// PolicyRecomputations counts the passes that recomputed the policy
	// of every local endpoint (one per policy trigger);
	// EndpointPolicyChanges counts the endpoint policies those passes
	// changed.
	PolicyRecomputations  uint64 `json:"policyRecomputations"`
	EndpointPolicyChanges uint64 `json:"endpointPolicyChanges"`
	// PolicyMapKeys is the number of policy keys over every local
	// endpoint: what Cilium's per-endpoint policy maps hold together.
	PolicyMapKeys int `json:"policyMapKeys"`
	// Datapath is the datapath in use: bpf or mem (empty if unknown).
	Datapath string `json:"datapath,omitempty"`
	// DatapathUpdates counts the map element writes and deletes Cilium's
	// layout needs for the same changes (one policy map per endpoint);
	// MapWrites counts those the simulator's datapath really did (its
	// endpoints with equal policies share keys, so it writes fewer).
	DatapathUpdates uint64 `json:"datapathUpdates"`
	MapWrites       uint64 `json:"mapWrites"`
	// KernelMapBytes is the kernel's memory of the agent's BPF maps (the
	// memlock of each map's fdinfo), present only with the bpf datapath:
	// the mem datapath has no kernel maps.
	KernelMapBytes *uint64 `json:"kernelMapBytes,omitempty"`
}

// Traffic is what arrived of one resource.
type Traffic struct {
	// Events are the watch events (ADDED, MODIFIED, DELETED; kvstore puts
	// and deletes; xDS resources upserted or removed); bookmarks and list
	// items are not events.
	Events uint64 `json:"events"`
	// Bytes are the bytes of every list and watch answer (bookmarks
	// included): JSON as sent by the API server, key and value of kvstore
	// pairs, the serialized resource of xDS.
	Bytes uint64 `json:"bytes"`
}

// Holding is what an agent holds of one resource.
type Holding struct {
	// Objects is the number of objects; Bytes their size as last
	// received (a watch frame's, a list item's, a kvstore pair's, an xDS
	// resource's), which a cilium-agent's caches hold decoded.
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}
