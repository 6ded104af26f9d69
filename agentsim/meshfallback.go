package agentsim

import (
	"context"
	"sync"

	"github.com/stampede-sim/stampede/scenarios"
)

// What the mesh read path carries, as groups that a replica takes over
// from the API server fallback one at a time (one per mirrored prefix).
type meshGroup int

const (
	groupIdentities meshGroup = iota // KVIDPrefix; CiliumIdentities
	groupIPCache                     // KVIPPrefix; CiliumEndpointSlices or CiliumEndpoints
	groupNodes                       // KVNodesPrefix; every CiliumNode
	meshGroups
)

// groupOf is the group an API server watch of the fallback feeds.
func groupOf(resource string) meshGroup {
	switch resource {
	case "ciliumidentities":
		return groupIdentities
	case "ciliumnodes":
		return groupNodes
	default: // ciliumendpointslices, ciliumendpoints
		return groupIPCache
	}
}

// fallbackWatches are the watches an agent of axes adds while it reads
// from the API server instead of a replica: those an agent of the same
// axes on the apiserver read path has and a mesh agent has not
// (CiliumIdentities, every CiliumNode, and CiliumEndpointSlices or
// CiliumEndpoints by the endpoints axis).
func fallbackWatches(r *scenarios.Release, axes scenarios.Axes, node string, disableEndpointCRD bool) []resourceSpec {
	own := map[string]bool{}
	for _, w := range agentWatches(r, axes, node, disableEndpointCRD) {
		own[w.name] = true
	}
	api := axes
	api.ReadPath = scenarios.ReadAPIServer
	var out []resourceSpec
	for _, w := range agentWatches(r, api, node, disableEndpointCRD) {
		if !own[w.name] {
			out = append(out, w)
		}
	}
	return out
}

// meshFallback is the API server read path a mesh agent falls back to
// while no replica answers: CFP-44774 ("Cilium Control Plane at Scale",
// "Bootstrap and connectivity", option 1, a proposal, not upstream; knob
// controlPlane.mesh.apiServerFallback). Its reflectors are the apiserver
// read path's own (watches.go startWatch), feeding the same identity
// cache and ipcache.
//
// The hand-over, in either direction, must leave the caches as the new
// source's list says, with nothing lost or held twice:
//
//   - to the fallback: the meshClient's session has ended (its watches
//     stopped) before start; each reflector's list replaces what the agent
//     holds. CiliumEndpoints lists delete every IP they lack
//     (replaceCEPs); slice lists only reconcile the slices they knew, so
//     after each one the ipcache entries still owned by the mirror
//     (kvOwner) are deleted: no slice carries them;
//   - to a replica: once the replica's canary of a prefix exists, the
//     group is handed over before the prefix is listed: the gate drops
//     the reflector's later lists and events (a late DELETE would
//     otherwise remove what the replica just listed, or a late upsert
//     keep an entry no replica event will ever delete), and the ipcache
//     entries are re-owned by kvOwner, so that the replica's list, which
//     deletes the kvOwner entries it lacks, drops whatever went meanwhile.
//     Once all three prefixes are listed, the reflectors stop.
//
// Cilium had such a hand-over once (kvstore-pod-network-support, removed
// by cilium/cilium#35741 and #38040); a maintainer argued against
// reviving it in the CFP's review (design-cfps#88), which is why it is a
// knob.
type meshFallback struct {
	m     *meshClient
	specs []resourceSpec

	// mu is read-held by a reflector while it applies a list or event,
	// and held to hand a group over or to start and stop.
	mu     sync.RWMutex
	active [meshGroups]bool // the group is read from the API server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	starts int
}

var _ watchGate = (*meshFallback)(nil)

func newMeshFallback(m *meshClient) *meshFallback {
	a := m.a
	return &meshFallback{m: m, specs: fallbackWatches(a.cfg.Release, a.cfg.Axes, a.cfg.Node, a.cfg.Knobs.DisableEndpointCRD)}
}

// apply implements watchGate.
func (f *meshFallback) apply(resource string, list bool, do func()) {
	g := groupOf(resource)
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.active[g] {
		return
	}
	do()
	if list && g == groupIPCache {
		a := f.m.a
		a.mu.Lock()
		for ip, e := range a.ipc.entries {
			if e.owner == kvOwner {
				a.deleteIP(ip, kvOwner)
			}
		}
		a.mu.Unlock()
	}
}

// running tells whether the reflectors run (false without a fallback).
func (f *meshFallback) running() bool {
	if f == nil {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cancel != nil
}

// start starts the reflectors, unless they run and feed every group
// already; reflectors some of whose groups a replica had taken over are
// restarted, so that their lists bring back what they did not apply.
// Called by the meshClient's run loop only, between sessions.
func (f *meshFallback) start(ctx context.Context) {
	f.mu.RLock()
	running, all := f.cancel != nil, f.active == [meshGroups]bool{true, true, true}
	f.mu.RUnlock()
	if running && all {
		return
	}
	f.stop()
	a := f.m.a
	fctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.active = [meshGroups]bool{true, true, true}
	f.cancel = cancel
	f.starts++
	f.mu.Unlock()
	f.m.fallbackTime.start(a.now())
	a.log.Warn("no mesh replica answers; reading Cilium's resources from the API server", "watches", len(f.specs))
	a.m.kvOps.WithLabelValues("mesh-fallback", "start").Inc()
	for _, spec := range f.specs {
		g := groupOf(spec.name)
		a.startWatch(spec, func(run func(context.Context), synced chan struct{}) {
			f.wg.Add(2)
			go func() { defer f.wg.Done(); run(fctx) }()
			go func() {
				defer f.wg.Done()
				select {
				case <-fctx.Done():
				case <-synced:
					f.m.markSynced(g)
				}
			}()
		}, f)
	}
}

// handOver stops applying what the reflectors of group g bring: a replica
// is about to list its prefix. The ipcache's entries become the mirror's
// (kvOwner), without a change to the digest or the datapath.
func (f *meshFallback) handOver(g meshGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel == nil || !f.active[g] {
		return
	}
	f.active[g] = false
	if g != groupIPCache {
		return
	}
	a := f.m.a
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, e := range a.ipc.entries {
		e.owner = kvOwner
		a.ipc.entries[ip] = e
	}
	clear(a.ipc.slices)
}

// stop stops the reflectors and waits for them.
func (f *meshFallback) stop() {
	f.mu.Lock()
	cancel := f.cancel
	f.cancel = nil
	f.active = [meshGroups]bool{}
	f.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	f.wg.Wait()
	// The reflectors' stores are gone with them: the agent's work
	// figures no longer count their objects as held.
	for _, spec := range f.specs {
		newObjectSizes(f.m.a.work.resource(spec.name)).publish()
	}
	f.m.fallbackTime.stop(f.m.a.now())
	f.m.a.m.kvOps.WithLabelValues("mesh-fallback", "stop").Inc()
	f.m.a.log.Info("mesh replica answers again; API server fallback stopped")
}
