// Package fakeapi is an in-memory Kubernetes API server that unmodified
// client-go and kubectl talk to over real HTTP. It keeps objects as written
// (JSON) with server-set metadata, serves list/watch with resourceVersion
// semantics, and fans out watch events the way the watch cache does.
//
// Lifecycle: New validates a Config; Start listens and serves until Close
// or the context ends; Close waits for every goroutine it started.
package fakeapi
