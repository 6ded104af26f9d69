package agentsim

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// ciliumNode is the CiliumNode (cilium.io/v2, cluster-scoped) an agent
// writes for its own node: the fields cilium-agent's node discovery sets
// that the simulation has. Empty sections are sent as Cilium's client
// sends them (its spec structs are not pointers, so they encode as {}).
type ciliumNode struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   ciliumNodeMeta `json:"metadata"`
	Spec       ciliumNodeSpec `json:"spec"`
}

type ciliumNodeMeta struct {
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

type ciliumNodeSpec struct {
	Addresses  []ciliumNodeAddress `json:"addresses"`
	Health     struct{}            `json:"health"`
	Ingress    struct{}            `json:"ingress"`
	Encryption ciliumNodeKey       `json:"encryption"`
	ENI        struct{}            `json:"eni"`
	Azure      struct{}            `json:"azure"`
	Alibaba    struct{}            `json:"alibaba-cloud"`
	IPAM       ciliumNodeIPAM      `json:"ipam"`
	BootID     string              `json:"bootid,omitempty"`
}

type ciliumNodeAddress struct {
	Type string `json:"type"`
	IP   string `json:"ip"`
}

// ciliumNodeKey is the node's encryption key index; 0 (no IPsec or
// WireGuard, Helm's default) is omitted as Cilium's `key,omitempty` does.
type ciliumNodeKey struct {
	Key int `json:"key,omitempty"`
}

type ciliumNodeIPAM struct {
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// ciliumNodeReadBack is what the agent reads of an existing CiliumNode.
type ciliumNodeReadBack struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// ciliumNodeRetry is the pause before another attempt after a conflict or
// failure (nodediscovery.go backoffDuration, v1.19-v1.20).
const ciliumNodeRetry = 500 * time.Millisecond

// ensureCiliumNode creates or updates the agent's own CiliumNode at
// start, as cilium-agent's node discovery does at start-up
// (cilium/cilium pkg/nodediscovery/nodediscovery.go
// updateCiliumNodeResource and mutateNodeResource, v1.19-v1.20, reached
// from UpdateCiliumNodeResource in the daemon's start hook and from
// StartDiscovery): it GETs the object; if that fails it creates it, else
// it updates it with the read resourceVersion; a conflict (or an
// AlreadyExists on create) reads it again after ciliumNodeRetry. The spec
// carries the node's InternalIP in spec.addresses, its pod CIDR in
// spec.ipam.podCIDRs and encryption key 0.
//
// Differences from Cilium, each worth at most a field or one request:
//   - Cilium's GET (K8sCiliumNodeWatcher.GetCiliumNode) reads the agent's
//     CiliumNode store when that is initialised, and only otherwise asks
//     the API server; here it always asks the API server.
//   - spec.ipam.podCIDRs: Cilium copies the Node's pod CIDR only with
//     ipam=kubernetes; with Helm's default cluster-pool the operator
//     writes them into the CiliumNode instead. Stampede assigns each Node
//     its /24 as kube-controller-manager would (the harness sets
//     spec.podCIDRs), so the agent writes it as in kubernetes IPAM.
//   - no ownerReference to the Node and no labels (the agent keeps no Node
//     UID; Stampede's Nodes carry no labels), no health or ingress IP
//     (neither endpoint is simulated), no CiliumInternalIP.
//
// Cilium does this in the daemon's start hook and exits after 10 failed
// attempts, so that its pod restarts and tries again; the simulated agent
// does it beside its first lists and keeps trying until ctx ends, so that
// an unreachable or overloaded API server delays neither its watches nor
// their error counts. Its endpoints do not wait for it (Cilium's CRD IPAM
// restoration does; Stampede models no IPAM).
func (a *Agent) ensureCiliumNode(ctx context.Context) {
	if a.kc == nil {
		return
	}
	obj := a.ciliumNodeObject(newBootID())
	path := pathCiliumNodes + "/" + a.cfg.Node
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(ciliumNodeRetry):
			}
		}
		raw, err := a.kc.do(ctx, http.MethodGet, path, "", nil, nil)
		var body []byte
		if err == nil {
			var cur ciliumNodeReadBack
			if err := json.Unmarshal(raw, &cur); err != nil {
				a.log.Warn("decode CiliumNode", "err", err)
				continue
			}
			obj.Metadata.ResourceVersion = cur.Metadata.ResourceVersion
			if body, err = json.Marshal(obj); err == nil {
				_, err = a.kc.do(ctx, http.MethodPut, path, "application/json", body, nil)
			}
		} else {
			obj.Metadata.ResourceVersion = ""
			if body, err = json.Marshal(obj); err == nil {
				_, err = a.kc.do(ctx, http.MethodPost, pathCiliumNodes, "application/json", body, nil)
			}
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		a.log.Warn("create or update CiliumNode", "attempt", attempt, "err", err)
	}
}

// ciliumNodeObject is the agent's CiliumNode without resourceVersion.
func (a *Agent) ciliumNodeObject(bootID string) ciliumNode {
	cn := ciliumNode{
		APIVersion: "cilium.io/v2", Kind: "CiliumNode",
		Metadata: ciliumNodeMeta{Name: a.cfg.Node},
		Spec:     ciliumNodeSpec{Addresses: []ciliumNodeAddress{}, BootID: bootID},
	}
	if a.cfg.NodeIP.IsValid() {
		cn.Spec.Addresses = append(cn.Spec.Addresses, ciliumNodeAddress{Type: "InternalIP", IP: a.cfg.NodeIP.String()})
	}
	if a.cfg.PodCIDR.IsValid() {
		cn.Spec.IPAM.PodCIDRs = []string{a.cfg.PodCIDR.String()}
	}
	return cn
}

// newBootID is a random boot ID in the kernel's format
// (/proc/sys/kernel/random/boot_id), which Cilium copies into spec.bootid.
func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
