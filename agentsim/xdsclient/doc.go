// Package xdsclient is the agent side of Stampede's xds mode: one ADS
// client per simulated node agent. It opens one gRPC connection to the
// control plane (controlplane/xds), subscribes to every type of
// internal/xdsapi with the agent's node name as xDS node id, decodes and
// validates each response, applies it to a Sink, then ACKs it; a response
// that does not decode or validate is NACKed with error_detail, nothing of
// it is applied (the agent keeps its last good state) and the error is
// counted. When the stream breaks it reconnects with exponential backoff
// and resumes: in delta mode (the default) it sends the versions of the
// resources it holds as initial_resource_versions, so the server resends
// only what changed meanwhile.
//
// The Sink is implemented by the agent (agentsim): it owns the identity
// cache, ipcache, policy and datapath. The client calls it from the one
// goroutine running Run, never concurrently, in this order for each
// response: the upserts and deletes of the response's resources, then
// Applied(typeURL, version). An agent that batches datapath writes should
// flush them in Applied.
//
// Lifecycle: New validates a Config; Run blocks until its context ends and
// closes the connection before it returns. Stats may be read at any time.
package xdsclient
