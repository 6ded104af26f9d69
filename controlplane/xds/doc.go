// Package xds is Stampede's central xDS control plane: it holds the
// resources of internal/xdsapi (identities, identity hosts, policies and
// per-node endpoints) and serves them to node agents over ADS with
// github.com/envoyproxy/go-control-plane, delta xDS (incremental, resumable
// with initial_resource_versions) and state-of-the-world on the same port.
//
// Lifecycle: New builds a Server from a Config; Apply may be called at any
// time (before, during or after Serve) by one or more goroutines; Serve
// blocks serving gRPC on a listener until its context ends, then stops the
// gRPC server gracefully and returns. Serve closes the listener.
//
// Each global type (identities, hosts, policies) is one
// go-control-plane LinearCache that every agent subscribes to with a
// wildcard; endpoints live in one LinearCache per node, chosen by the
// request's node id, so an agent receives only its own. State-of-the-world
// responses carry the full state of the type (the protocol cannot express
// deletions otherwise for these types).
//
// Push latency: every Apply that changes something is a change; the Server
// records the time until every agent connected at that moment has ACKed a
// response whose version contains the change (histogram
// stampede_xds_push_latency_seconds, and PushLatency / the JSON handler).
package xds
