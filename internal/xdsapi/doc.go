// Package xdsapi holds the protobuf messages Stampede's xDS control plane
// serves to node agents (identities, identity -> addresses, policies and
// each node's own endpoints) and their type URLs: the wire format that the
// server (controlplane/xds) and the agents' client (agentsim/xdsclient)
// share, which is why it sits under internal/, where both sides may import
// it. stampede.pb.go is generated from stampede.proto by `make generate`
// (protoc from Debian's protobuf-compiler, protoc-gen-go pinned in go.mod's
// tool block); do not edit it by hand.
package xdsapi

//go:generate sh -c "go build -o ../../bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go && protoc --plugin=protoc-gen-go=../../bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative stampede.proto"

// Type URLs of the resources, as they appear in discovery requests.
const (
	typePrefix        = "type.googleapis.com/stampede.xds.v1."
	TypeIdentity      = typePrefix + "Identity"
	TypeIdentityHosts = typePrefix + "IdentityHosts"
	TypePolicy        = typePrefix + "Policy"
	TypeEndpoint      = typePrefix + "Endpoint"
)

// Types lists every type URL in the order an agent subscribes to them:
// identities first, so that the hosts and policies that follow can be
// resolved.
var Types = []string{TypeIdentity, TypeIdentityHosts, TypePolicy, TypeEndpoint}
