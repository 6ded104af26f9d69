package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"reflect"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
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
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	Labels          map[string]string `json:"labels,omitempty"`
	OwnerReferences []ownerRef        `json:"ownerReferences,omitempty"`
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

// syncCEP brings the endpoint's CiliumEndpoint up to date, as the
// controller that Cilium's endpoint synchroniser runs per endpoint
// (pkg/endpointmanager/endpointsynchronizer.go RunK8sCiliumEndpointSync,
// v1.17 to v1.19; triggered on identity change by pkg/endpoint
// identityLabelsChanged, and every agent.endpointSyncInterval):
//
//   - a status equal to the one last written is not written again;
//   - until the agent holds the object, it GETs it, the first time from
//     the API server's cache (resourceVersion=0), later from storage; if
//     it is missing, it creates it with the pod's labels and an owner
//     reference to the pod, and keeps the created object's uid;
//   - otherwise it sends a JSON patch that tests /metadata/uid and
//     replaces /status, so that it never writes over another object of
//     the same name. A conflict makes the next run read the object
//     again; another failure too, and is retried.
//
// In kvstore mode the endpoint's ipcache entry is written to the kvstore
// first; with agent.disableEndpointCRD or NoCEPWrites nothing is written
// to the API server.
//
// NoCEPWrites is --disable-endpoint-crd as cilium/cilium PR #45698 (merged
// 2026, for pairing with the operator's ces-controller-mode=slim) made it:
// the endpoint manager does not run EndpointSynchronizer.RunK8sCiliumEndpointSync
// (pkg/endpointmanager/endpointsynchronizer.go) at all, so the agent makes
// no CiliumEndpoint GET, create, patch or delete, while it keeps its
// CiliumEndpointSlice watch (unlike agent.disableEndpointCRD here, which
// models the flag before that PR and drops the endpoint watch too). The
// endpoint still resolves its identity: only the write is skipped.
func (a *Agent) syncCEP(ctx context.Context, k string) error {
	a.mu.Lock()
	p := a.eps.pods[k]
	if p == nil || p.id == 0 {
		a.mu.Unlock()
		return nil
	}
	state := a.cepStateOf(p)
	if p.cepCreated && p.cepState == state {
		a.mu.Unlock()
		return nil
	}
	st := a.endpointStatus(p)
	id, created, got, cepUID := p.id, p.cepCreated, p.cepGot, p.cepUID
	ns, name, uid, ip := p.ns, p.name, p.uid, p.ip
	var labels map[string]string
	if !created {
		labels = maps.Clone(p.labels)
	}
	a.mu.Unlock()

	if a.kv != nil {
		if err := a.kv.putIP(ctx, ip, id, ns, name); err != nil {
			return err
		}
		a.kv.releaseUnused(ctx, a.keysInUse())
	}
	if a.writesNoCEPs() {
		a.cepSynced(k, id, "", state)
		return nil
	}
	path := "/apis/cilium.io/v2/namespaces/" + ns + "/ciliumendpoints"
	if !created {
		cur, err := a.getCEP(ctx, path+"/"+name, !got)
		a.mu.Lock()
		if p := a.eps.pods[k]; p != nil {
			p.cepGot = true
		}
		a.mu.Unlock()
		switch {
		case err == nil:
			// Cilium's updateCEPUID takes over an object only if it
			// holds no uid yet or the same one (and the pod is local,
			// as every pod an agent syncs is here): an endpoint never
			// writes over an object it did not create or adopt.
			if cepUID != "" && cepUID != cur.Metadata.UID {
				return fmt.Errorf("endpoint %s: CiliumEndpoint uid %s is not the endpoint's %s", k, cur.Metadata.UID, cepUID)
			}
			cepUID = cur.Metadata.UID
			if reflect.DeepEqual(cur.Status, st) {
				a.cepSynced(k, id, cepUID, state)
				return nil
			}
			a.mu.Lock()
			if p := a.eps.pods[k]; p != nil {
				p.cepUID = cepUID
			}
			a.mu.Unlock()
		case httpCode(err) == http.StatusNotFound:
			cepUID, err = a.createCEP(ctx, path, name, ns, uid, labels, st)
			if err != nil {
				return fmt.Errorf("write endpoint %s: %w", k, err)
			}
			a.cepSynced(k, id, cepUID, state)
			return nil
		default:
			return fmt.Errorf("read endpoint %s: %w", k, err)
		}
	}
	body, err := json.Marshal([]jsonPatchOp{
		{Op: "test", Path: "/metadata/uid", Value: cepUID},
		{Op: "replace", Path: "/status", Value: st},
	})
	if err != nil {
		return fmt.Errorf("encode endpoint patch %s: %w", k, err)
	}
	_, err = a.kc.do(ctx, http.MethodPatch, path+"/"+name, "application/json-patch+json", body, nil)
	a.countCEPWrite("patch", err)
	if err != nil {
		// Read the object again before the next write.
		a.mu.Lock()
		if p := a.eps.pods[k]; p != nil {
			p.cepCreated = false
		}
		a.mu.Unlock()
		if httpCode(err) == http.StatusConflict {
			// Cilium waits for the controller's next run.
			return nil
		}
		return fmt.Errorf("write endpoint %s: %w", k, err)
	}
	a.cepSynced(k, id, cepUID, state)
	return nil
}

// cepState is what an endpoint's CiliumEndpoint status is built from
// (endpointStatus; the pod's name and the node's IP do not change): equal
// states give equal statuses, so comparing them is Cilium's comparison of
// the status with the one last written, without building it.
type cepState struct {
	epID int64
	id   identity.ID
	// labelled: the identity's labels were known.
	labelled bool
	ip       netip.Addr
}

// cepStateOf is the state of p's status (caller holds mu).
func (a *Agent) cepStateOf(p *localPod) cepState {
	return cepState{epID: p.epID, id: p.id, labelled: a.ids.get(p.id) != nil, ip: p.ip}
}

// cepSynced records that the endpoint's CiliumEndpoint carries the status
// of state (uid "": keep the known one), and queues the endpoint again if
// its identity changed meanwhile.
func (a *Agent) cepSynced(k string, id identity.ID, uid string, state cepState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.eps.pods[k]
	if p == nil {
		return
	}
	p.cepCreated = true
	p.cepID = state.id
	p.cepState = state
	if uid != "" {
		p.cepUID = uid
	}
	if p.id != id {
		a.eps.queue.add(k)
	}
}

// cepReadBack is what the agent reads back of a CiliumEndpoint.
type cepReadBack struct {
	Metadata struct {
		UID string `json:"uid"`
	} `json:"metadata"`
	Status EndpointStatus `json:"status"`
}

// getCEP reads a CiliumEndpoint, from the API server's watch cache if
// cached (resourceVersion=0), else from storage.
func (a *Agent) getCEP(ctx context.Context, path string, cached bool) (*cepReadBack, error) {
	var params map[string]string
	if cached {
		params = map[string]string{"resourceVersion": "0"}
	}
	raw, err := a.kc.do(ctx, http.MethodGet, path, "", nil, params)
	if err != nil {
		return nil, err
	}
	var o cepReadBack
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &o, nil
}

// createCEP creates a pod's CiliumEndpoint, labelled as the pod and owned
// by it, and returns the new object's uid.
func (a *Agent) createCEP(ctx context.Context, path, name, ns, podUID string, labels map[string]string, st EndpointStatus) (string, error) {
	cep := CiliumEndpoint{
		APIVersion: "cilium.io/v2", Kind: "CiliumEndpoint",
		Metadata: cepMeta{Name: name, Namespace: ns, Labels: labels},
		Status:   st,
	}
	if podUID != "" {
		cep.Metadata.OwnerReferences = []ownerRef{{APIVersion: "v1", Kind: "Pod", Name: name, UID: podUID}}
	}
	body, err := json.Marshal(cep)
	if err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	raw, err := a.kc.do(ctx, http.MethodPost, path, "application/json", body, nil)
	a.countCEPWrite("create", err)
	if err != nil {
		return "", err
	}
	var o cepReadBack
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("decode created endpoint: %w", err)
	}
	return o.Metadata.UID, nil
}

// periodicEndpointSync runs every endpoint's CiliumEndpoint sync each
// agent.endpointSyncInterval, as Cilium's per-endpoint controller runs
// (RunK8sCiliumEndpointSync's RunInterval): an endpoint whose status did
// not change costs no request.
func (a *Agent) periodicEndpointSync(ctx context.Context) {
	t := time.NewTicker(a.cfg.Knobs.EndpointSyncInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		for k := range a.eps.pods {
			a.eps.queue.add(k)
		}
		a.mu.Unlock()
	}
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

// writesNoCEPs says whether the agent makes no CiliumEndpoint request
// (agent.disableEndpointCRD, endpoints ces-slim, or NoCEPWrites: see
// syncCEP).
func (a *Agent) writesNoCEPs() bool {
	return a.cfg.NoCEPWrites || !a.cfg.Axes.AgentsWriteCEPs(a.cfg.Knobs.DisableEndpointCRD)
}

// deleteCEP deletes a removed pod's CiliumEndpoint (and kvstore entries)
// with the object's uid as a precondition, so that it never deletes a
// newer object of the same name, as Cilium's deleteCEP does
// (pkg/endpointmanager/endpointsynchronizer.go, v1.17 to v1.19); without a
// known uid (never created or read) there is nothing to delete.
func (a *Agent) deleteCEP(ctx context.Context, k string, p *localPod) {
	if a.kv != nil {
		a.kv.deleteIP(ctx, p.ip)
	}
	a.mu.Lock()
	uid := p.cepUID
	a.mu.Unlock()
	if uid == "" || a.writesNoCEPs() {
		return
	}
	body, err := json.Marshal(map[string]any{
		"kind": "DeleteOptions", "apiVersion": "v1",
		"preconditions": map[string]string{"uid": uid},
	})
	if err != nil {
		a.log.Debug("delete endpoint", "pod", k, "err", err)
		return
	}
	_, err = a.kc.do(ctx, http.MethodDelete, "/apis/cilium.io/v2/namespaces/"+p.ns+"/ciliumendpoints/"+p.name, "application/json", body, nil)
	a.countCEPWrite("delete", err)
	if err != nil && httpCode(err) != http.StatusNotFound {
		a.log.Debug("delete endpoint", "pod", k, "err", err)
	}
}
