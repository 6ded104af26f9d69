package agentsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/xdsapi"
	"github.com/stampede-sim/stampede/scenarios"
)

// XDSAgent is an agent of the xds mode: it has no API server connection
// and no credentials; the central control plane pushes identities,
// identity -> IPs, policies and the node's own endpoints, which it applies
// to the same caches, policy resolution and datapath as the other modes.
type XDSAgent struct {
	a      *Agent
	server string
	hosts  map[identity.ID][]uint32
	hmu    sync.Mutex
	client atomic.Pointer[xdsclient.Client]
	types  sync.Map // typeURL -> true once applied
}

var _ xdsclient.Sink = (*XDSAgent)(nil)

// NewXDSAgent builds an xds-mode agent that will connect to server.
func NewXDSAgent(cfg AgentConfig, server string) (*XDSAgent, error) {
	if cfg.Mode == "" {
		cfg.Mode = scenarios.ModeXDS
	}
	if cfg.Axes == (scenarios.Axes{}) {
		p, _ := scenarios.Preset(scenarios.ModeXDS)
		cfg.Axes = p.Axes
	}
	cfg.setDefaults()
	if !cfg.Axes.HasXDS() {
		return nil, fmt.Errorf("xds agent %s: mode %s (axes %s) does not read from the xDS control plane", cfg.Node, cfg.Mode, cfg.Axes)
	}
	if cfg.Node == "" || cfg.Datapath == nil || cfg.Metrics == nil {
		return nil, errors.New("xds agent: Node, Datapath and Metrics must be set")
	}
	if server == "" {
		return nil, fmt.Errorf("xds agent %s: control plane address must be set", cfg.Node)
	}
	a := newAgentState(cfg)
	x := &XDSAgent{a: a, server: server, hosts: map[identity.ID][]uint32{}}
	a.moreWork = x.addWork
	return x, nil
}

// addWork adds what the ADS client received and holds, by type, to the
// agent's report (xds-<type>).
func (x *XDSAgent) addWork(w *agentcontract.Work) {
	cl := x.client.Load()
	if cl == nil {
		return
	}
	for t, tw := range cl.Work() {
		addTraffic(w, "xds-"+t, agentcontract.Traffic{Events: tw.Events, Bytes: tw.Bytes})
		addHolding(w, "xds-"+t, agentcontract.Holding{Objects: tw.Objects, Bytes: tw.HeldBytes})
	}
}

// Node is the agent's node name.
func (x *XDSAgent) Node() string { return x.a.cfg.Node }

// Status reports the agent.
func (x *XDSAgent) Status() Status { return x.a.Status() }

// LastChange is when the agent's state last changed.
func (x *XDSAgent) LastChange() time.Time { return x.a.LastChange() }

func (x *XDSAgent) datapathStats() (datapath.Stats, bool) { return x.a.datapathStats() }

// Run connects to the control plane with its own ADS stream
// (agentsim/xdsclient) and applies what it pushes until ctx ends.
func (x *XDSAgent) Run(ctx context.Context) error {
	a := x.a
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		a.closeDatapath()
	}()
	cl, err := xdsclient.New(xdsclient.Config{
		Server: x.server, Node: a.cfg.Node, Sink: x,
		StateOfTheWorld: a.cfg.XDSStateOfTheWorld, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("xds agent %s: %w", a.cfg.Node, err)
	}
	x.client.Store(cl)
	for _, f := range []func(context.Context){a.regenLoop, a.dpWriter} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	return cl.Run(ctx)
}

// --- the xdsclient Sink ---

// UpsertIdentity sets the labels ("source:key=value", sorted) of id.
func (x *XDSAgent) UpsertIdentity(id uint32, labels []string) error {
	l, err := identity.ParseKey(strings.Join(labels, ";") + ";")
	if len(labels) == 0 {
		l, err = identity.Labels{}, nil
	}
	if err != nil {
		return fmt.Errorf("identity %d: %w", id, err)
	}
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.upsertIdentity(identity.ID(id), l, l.Key())
	return nil
}

// DeleteIdentity forgets id.
func (x *XDSAgent) DeleteIdentity(id uint32) error {
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleteIdentity(identity.ID(id))
	return nil
}

// SetIdentityHosts replaces the addresses of id in the ipcache. Entries
// are owned by their identity, so an address that moved to another
// identity is not removed by the old identity's update.
func (x *XDSAgent) SetIdentityHosts(id uint32, addrs []netip.Addr) error {
	a := x.a
	a.events.Add(1)
	keys := make([]uint32, 0, len(addrs))
	for _, ad := range addrs {
		if k, ok := addrKey(ad); ok {
			keys = append(keys, k)
		}
	}
	x.hmu.Lock()
	old := x.hosts[identity.ID(id)]
	x.hosts[identity.ID(id)] = keys
	x.hmu.Unlock()
	keep := make(map[uint32]bool, len(keys))
	for _, k := range keys {
		keep[k] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range old {
		if !keep[k] {
			a.deleteIP(k, uint32(id))
		}
	}
	for _, k := range keys {
		a.setIP(k, identity.ID(id), uint32(id))
	}
	return nil
}

// DeleteIdentityHosts removes every address of id.
func (x *XDSAgent) DeleteIdentityHosts(id uint32) error {
	return x.SetIdentityHosts(id, nil)
}

// UpsertPolicy adds or replaces a policy's rules.
func (x *XDSAgent) UpsertPolicy(namespace, name string, rules []policy.Rule) error {
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pol.setRules(podKey(namespace, name), rules, true)
	return nil
}

// DeletePolicy removes a policy.
func (x *XDSAgent) DeletePolicy(namespace, name string) error {
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pol.setRules(podKey(namespace, name), nil, false)
	return nil
}

// SetEndpoint adds or replaces a local endpoint.
func (x *XDSAgent) SetEndpoint(ep xdsclient.Endpoint) error {
	return x.setEndpoint(ep.Namespace, ep.Name, ep.IP, ep.Identity)
}

// setEndpoint adds or replaces a local endpoint with the identity the
// control plane allocated.
func (x *XDSAgent) setEndpoint(namespace, name string, ip netip.Addr, id uint32) error {
	if !ip.Is4() {
		return fmt.Errorf("endpoint %s/%s: want an IPv4 address, got %s", namespace, name, ip)
	}
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	k := podKey(namespace, name)
	p, ok := a.eps.pods[k]
	if !ok {
		p = a.eps.add(k, a.cfg.Interner.String(namespace), name, "")
	}
	if p.ip.IsValid() && p.ip != ip && p.allowed != nil {
		a.queueDP(dpOp{kind: dpDeleteEndpoint, ep: p.ip})
		p.allowed = nil
	}
	p.ip = ip
	p.cepCreated = true // no CiliumEndpoint in xds mode
	// A new identity of an existing endpoint waits out the
	// identity-change grace period, as in every other mode (assign):
	// the control plane has already pushed it to every node, which is
	// what the period gives them time for.
	a.assignAfterGrace(p, identity.ID(id), func() { p.cepID = p.id })
	return nil
}

// DeleteEndpoint removes a local endpoint.
func (x *XDSAgent) DeleteEndpoint(namespace, name string) error {
	a := x.a
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	k := podKey(namespace, name)
	if p, ok := a.eps.pods[k]; ok {
		p.cepCreated = false
		a.removePod(k, p)
	}
	return nil
}

// Applied is called after each response; policy recomputation is already
// triggered by the changes. The agent counts as synced once a response of
// every type has been applied.
func (x *XDSAgent) Applied(typeURL, version string) {
	x.types.Store(typeURL, true)
	n := 0
	x.types.Range(func(any, any) bool { n++; return true })
	if n >= len(xdsapi.Types) {
		x.a.synced.Store(true)
	}
}
