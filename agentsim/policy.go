package agentsim

import (
	"context"
	"sort"
	"time"

	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// policyRegen is the agent's policy regeneration: the compiled rules of
// every policy it received, the selector cache they are resolved with
// (policy.Cache, which the identity cache keeps informed) and the signal
// that asks for a regeneration. Regenerations are spaced by
// AgentConfig.RegenInterval, as cilium-agent batches endpoint
// regenerations: identity and policy events arriving meanwhile are handled
// together. Guarded by Agent.mu, except sig.
type policyRegen struct {
	// rules holds the compiled rules by policy (namespace/name); dirty
	// says they changed since the selector cache got them.
	rules map[string][]policy.Rule
	dirty bool
	cache *policy.Cache
	sig   chan struct{}
}

func newPolicyRegen() *policyRegen {
	return &policyRegen{
		rules: map[string][]policy.Rule{},
		cache: policy.NewCache(),
		sig:   make(chan struct{}, 1),
	}
}

// trigger asks for a regeneration; any goroutine may call it.
func (r *policyRegen) trigger() {
	select {
	case r.sig <- struct{}{}:
	default:
	}
}

// setRules replaces the rules of policy k; !ok deletes them.
func (r *policyRegen) setRules(k string, rules []policy.Rule, ok bool) {
	if ok {
		r.rules[k] = rules
	} else {
		delete(r.rules, k)
	}
	r.dirty = true
	r.trigger()
}

// sliceID names one resolution: endpoints selected by the same rules
// share one allowed slice (see policy.Cache.Resolve).
type sliceID struct {
	first *policykey.Key
	n     int
}

// resolve resolves every local endpoint's policy and returns the datapath
// writes of those that changed, endpoints with equal policies grouped;
// changed says some endpoint's policy did.
func (r *policyRegen) resolve(pods map[string]*localPod, ids *identityCache) (ops []dpOp, changed bool) {
	if r.dirty {
		keys := make([]string, 0, len(r.rules))
		for k := range r.rules {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var all []policy.Rule
		for _, k := range keys {
			all = append(all, r.rules[k]...)
		}
		r.cache.SetRules(all)
		r.dirty = false
	}
	byKey := map[string][]policykey.Key{}
	// Endpoints that get equal resolutions are written as one group, in
	// the order their first endpoint was met.
	groups := map[sliceID]int{}
	for _, p := range pods {
		if p.id == 0 {
			continue
		}
		// The endpoint's labels select the rules that apply to it: its
		// identity's, or, while this agent has not yet seen the identity
		// it allocated come back from the API server, the labels it
		// allocated it for (Cilium's allocator knows them locally). An
		// endpoint left out here would keep its old policy and split its
		// policy set.
		labels, key := p.want, p.wantKey
		if e := ids.get(p.id); e != nil {
			labels, key = e.labels, e.key
		} else if p.pendingID != 0 || labels == nil {
			continue
		}
		keys, ok := byKey[key]
		if !ok {
			keys = r.cache.Resolve(labels)
			byKey[key] = keys
		}
		if p.allowed != nil && policykey.Equal(p.allowed, keys) {
			continue
		}
		sid := sliceID{n: len(keys)}
		if len(keys) > 0 {
			sid.first = &keys[0]
		}
		i, ok := groups[sid]
		if !ok {
			// Rules of different namespaces often allow the same peers:
			// their resolutions are equal but not shared, and endpoints
			// with equal policies must be one group to share a set.
			i = len(ops)
			for j := range ops {
				if policykey.Equal(ops[j].keys, keys) {
					i = j
					break
				}
			}
			if i == len(ops) {
				ops = append(ops, dpOp{kind: dpReplacePolicy, keys: keys})
			}
			groups[sid] = i
		}
		ops[i].eps = append(ops[i].eps, p.ip)
		p.allowed = keys
		changed = true
	}
	return ops, changed
}

// triggerRegen asks for a regeneration of the agent's endpoint policies.
func (a *Agent) triggerRegen() { a.pol.trigger() }

// regenLoop recomputes endpoint policies when identities, rules or
// endpoint identities change, at most once per RegenInterval, which
// defaults to agent.policyTriggerInterval: Cilium's pkg/policy
// NewUpdater runs its "policy_update" trigger (regenerating every local
// endpoint) with MinInterval option.Config.PolicyTriggerInterval,
// --policy-trigger-interval, default pkg/defaults PolicyTriggerInterval
// = 1s (1.17 to 1.19).
func (a *Agent) regenLoop(ctx context.Context) {
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.pol.sig:
		}
		a.regenerate()
		t.Reset(a.cfg.RegenInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// regenerate resolves every local endpoint's policy and queues the ones
// that changed for the datapath.
func (a *Agent) regenerate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	ops, changed := a.pol.resolve(a.eps.pods, a.ids)
	a.work.regens.Add(1)
	for _, op := range ops {
		a.work.epChanges.Add(uint64(len(op.eps)))
	}
	if changed {
		a.dig.policyStale = true
		a.changed()
	}
	for _, op := range ops {
		a.queueDP(op)
	}
}

// slimCNP is a CiliumNetworkPolicy as received.
type slimCNP struct {
	watchStatus
	policy.CiliumNetworkPolicy
}

func (o *slimCNP) resourceVersion() string { return o.Metadata.ResourceVersion }

func (o *slimCNP) objectName() (string, string) { return o.Metadata.Namespace, o.Metadata.Name }

func (a *Agent) compilePolicy(c *slimCNP) ([]policy.Rule, bool) {
	rules, err := policy.Compile(&c.CiliumNetworkPolicy)
	if err != nil {
		a.log.Warn("ignoring invalid CiliumNetworkPolicy", "err", err)
		return nil, false
	}
	return rules, true
}

func (a *Agent) replacePolicies(items []slimCNP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.pol.rules)
	for i := range items {
		if r, ok := a.compilePolicy(&items[i]); ok {
			a.pol.rules[podKey(items[i].Metadata.Namespace, items[i].Metadata.Name)] = r
		}
	}
	a.pol.dirty = true
	a.pol.trigger()
}

func (a *Agent) onPolicy(typ string, c *slimCNP) {
	a.events.Add(1)
	var rules []policy.Rule
	ok := false
	if typ != evDeleted {
		rules, ok = a.compilePolicy(c)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pol.setRules(podKey(c.Metadata.Namespace, c.Metadata.Name), rules, ok)
}
