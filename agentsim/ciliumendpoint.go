package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// CiliumEndpoint is the object an agent writes for each local pod (the
// fields Cilium's endpoint synchronizer fills that the simulation has).
type CiliumEndpoint struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   cepMeta        `json:"metadata"`
	Status     EndpointStatus `json:"status"`
}

type cepMeta struct {
	Name            string     `json:"name"`
	Namespace       string     `json:"namespace"`
	OwnerReferences []ownerRef `json:"ownerReferences,omitempty"`
}

type ownerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
}

// EndpointStatus is a CiliumEndpoint's status.
type EndpointStatus struct {
	ID                  int64               `json:"id"`
	Identity            EndpointIdentity    `json:"identity"`
	Networking          EndpointNetworking  `json:"networking"`
	State               string              `json:"state"`
	ExternalIdentifiers ExternalIdentifiers `json:"external-identifiers"`
	Encryption          struct{}            `json:"encryption"`
}

// EndpointIdentity is the endpoint's security identity and its labels.
type EndpointIdentity struct {
	ID     int64    `json:"id"`
	Labels []string `json:"labels"`
}

// EndpointNetworking holds the endpoint's addresses and node IP.
type EndpointNetworking struct {
	Addressing []AddressPair `json:"addressing"`
	Node       string        `json:"node,omitempty"`
}

// AddressPair is an endpoint address.
type AddressPair struct {
	IPv4 string `json:"ipv4,omitempty"`
}

// ExternalIdentifiers name the pod of an endpoint.
type ExternalIdentifiers struct {
	K8sNamespace string `json:"k8s-namespace"`
	K8sPodName   string `json:"k8s-pod-name"`
	PodName      string `json:"pod-name"`
}

// endpointStatus builds a local endpoint's CiliumEndpoint status (caller
// holds mu).
func (a *Agent) endpointStatus(p *localPod) EndpointStatus {
	var labels []string
	if e := a.ids.get(p.id); e != nil {
		labels = make([]string, len(e.labels))
		for i, l := range e.labels {
			labels[i] = l.String()
		}
	}
	st := EndpointStatus{
		ID:                  p.epID,
		Identity:            EndpointIdentity{ID: int64(p.id), Labels: labels},
		Networking:          EndpointNetworking{Addressing: []AddressPair{{IPv4: p.ip.String()}}},
		State:               "ready",
		ExternalIdentifiers: ExternalIdentifiers{K8sNamespace: p.ns, K8sPodName: p.name, PodName: p.ns + "/" + p.name},
	}
	if a.cfg.NodeIP.IsValid() {
		st.Networking.Node = a.cfg.NodeIP.String()
	}
	return st
}

// syncCEP writes the endpoint's CiliumEndpoint if it does not carry the
// current identity: POST the first time, a JSON patch replacing /status
// afterwards (pkg/k8s endpoint synchronizer).
func (a *Agent) syncCEP(ctx context.Context, k string) error {
	a.mu.Lock()
	p := a.eps.pods[k]
	if p == nil || p.id == 0 || (p.cepCreated && p.cepID == p.id) {
		a.mu.Unlock()
		return nil
	}
	id, created := p.id, p.cepCreated
	st := a.endpointStatus(p)
	ns, name, uid, ip := p.ns, p.name, p.uid, p.ip
	a.mu.Unlock()

	if a.kv != nil {
		if err := a.kv.putIP(ctx, ip, id, ns, name); err != nil {
			return err
		}
		a.kv.releaseUnused(ctx, a.keysInUse())
	}
	path := "/apis/cilium.io/v2/namespaces/" + ns + "/ciliumendpoints"
	var err error
	if !created {
		cep := CiliumEndpoint{
			APIVersion: "cilium.io/v2", Kind: "CiliumEndpoint",
			Metadata: cepMeta{Name: name, Namespace: ns},
			Status:   st,
		}
		if uid != "" {
			cep.Metadata.OwnerReferences = []ownerRef{{APIVersion: "v1", Kind: "Pod", Name: name, UID: uid}}
		}
		body, merr := json.Marshal(cep)
		if merr != nil {
			return fmt.Errorf("encode endpoint %s: %w", k, merr)
		}
		_, err = a.kc.do(ctx, http.MethodPost, path, "application/json", body, nil)
		a.countCEPWrite("create", err)
		if httpCode(err) == http.StatusConflict {
			created = true
		}
	}
	if created {
		body, merr := json.Marshal([]jsonPatchOp{{Op: "replace", Path: "/status", Value: st}})
		if merr != nil {
			return fmt.Errorf("encode endpoint patch %s: %w", k, merr)
		}
		_, err = a.kc.do(ctx, http.MethodPatch, path+"/"+name, "application/json-patch+json", body, nil)
		a.countCEPWrite("patch", err)
		if httpCode(err) == http.StatusNotFound {
			// Deleted behind our back: create it again next time.
			a.mu.Lock()
			if p := a.eps.pods[k]; p != nil {
				p.cepCreated = false
			}
			a.mu.Unlock()
		}
	}
	if err != nil {
		return fmt.Errorf("write endpoint %s: %w", k, err)
	}
	a.mu.Lock()
	if p := a.eps.pods[k]; p != nil {
		p.cepCreated = true
		p.cepID = id
		if p.id != id {
			a.eps.queue.add(k)
		}
	}
	a.mu.Unlock()
	return nil
}

// keysInUse lists the label keys of the identities local endpoints use or
// wait for.
func (a *Agent) keysInUse() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.eps.pods))
	for _, p := range a.eps.pods {
		out[p.wantKey] = true
		if e := a.ids.get(p.id); e != nil {
			out[e.key] = true
		}
		if e := a.ids.get(p.pendingID); e != nil {
			out[e.key] = true
		}
	}
	return out
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (a *Agent) countCEPWrite(op string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	a.m.cepWrites.WithLabelValues(op, outcome).Inc()
}

// deleteCEP deletes a removed pod's CiliumEndpoint (and kvstore entries).
func (a *Agent) deleteCEP(ctx context.Context, k string, p *localPod) {
	if a.kv != nil {
		a.kv.deleteIP(ctx, p.ip)
	}
	_, err := a.kc.do(ctx, http.MethodDelete, "/apis/cilium.io/v2/namespaces/"+p.ns+"/ciliumendpoints/"+p.name, "", nil, nil)
	a.countCEPWrite("delete", err)
	if err != nil && httpCode(err) != http.StatusNotFound {
		a.log.Debug("delete endpoint", "pod", k, "err", err)
	}
}
