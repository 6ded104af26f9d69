package controlplane

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/scenarios"
)

// The CiliumEndpoint source of the CES controller: Cilium's default CES
// controller (operator/pkg/ciliumendpointslice DefaultController), which
// copies each CiliumEndpoint the agents write into a slice.

// cepSource feeds c from a CiliumEndpoint informer.
type cepSource struct{ c *cesController }

func (s cepSource) start(ctx context.Context) ([]cache.InformerSynced, func(), error) {
	c := s.c
	f := dynamicinformer.NewDynamicSharedInformerFactory(c.cfg.kube.dyn, 0)
	ceps := f.ForResource(gvrEndpoint).Informer()
	if err := countEvents(ceps, c.cfg.events, "ciliumendpoints"); err != nil {
		return nil, nil, err
	}
	reg, err := ceps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.upsert(o, time.Now()) },
		UpdateFunc: func(_, o any) { c.upsert(o, time.Now()) },
		DeleteFunc: func(o any) { c.remove(o, time.Now()) },
	})
	if err != nil {
		return nil, nil, err
	}
	f.Start(ctx.Done())
	return []cache.InformerSynced{reg.HasSynced}, f.Shutdown, nil
}

func (s cepSource) endpointLocked(ns, name string) (coreCEP, bool) {
	e, ok := s.c.ceps[ns+"/"+name]
	return e, ok
}

// slimCEP is the part of a CiliumEndpoint the CES controller copies.
type slimCEP struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		Identity *struct {
			ID int64 `json:"id"`
		} `json:"identity,omitempty"`
		Networking *cesNetworking `json:"networking,omitempty"`
		Encryption *struct {
			Key int `json:"key,omitempty"`
		} `json:"encryption,omitempty"`
	} `json:"status"`
}

func (c *cesController) upsert(o any, now time.Time) {
	var cep slimCEP
	if err := fromUnstructured(o, &cep); err != nil {
		c.cfg.log.Warn("decode CiliumEndpoint", "error", err)
		return
	}
	ns, name := cep.Metadata.Namespace, cep.Metadata.Name
	core := coreCEP{Name: name, Networking: cep.Status.Networking}
	if cep.Status.Identity != nil {
		core.ID = cep.Status.Identity.ID
	}
	if cep.Status.Encryption != nil {
		core.Encryption.Key = cep.Status.Encryption.Key
	}
	key := ns + "/" + name
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.ceps[key]
	c.ceps[key] = core
	c.noteRunLocked(ns, cep.Metadata.Labels)
	byIdentity := c.cfg.knobs.SliceMode == scenarios.SliceModeIdentity
	if sn, ok := c.member[key]; ok {
		if !byIdentity || c.slices[sn].id == core.ID {
			if !had || !equalCore(old, core) {
				c.touch(sn, now)
			}
			return
		}
		// Identity mode: the endpoint leaves the slice of its old identity.
		delete(c.slices[sn].members, name)
		delete(c.member, key)
		c.touch(sn, now)
	}
	c.placeLocked(ns, name, core.ID, now)
}

func (c *cesController) remove(o any, now time.Time) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ceps, key)
	c.removeMemberLocked(u.GetNamespace(), u.GetName(), now)
}
