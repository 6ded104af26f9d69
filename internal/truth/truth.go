package truth

import (
	"fmt"
	"sort"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/scenarios"
)

// Expected is what one node's agent should report once converged.
type Expected struct {
	IPCache string `json:"ipcacheDigest"`
	Policy  string `json:"policyDigest"`
}

// State is the ground truth: the cluster after the steps applied so far.
type State struct {
	Cluster    string
	Filter     *identity.Filter
	Namespaces []scenarios.Namespace
	// Pods with their current placement; pods without a valid IP are
	// ignored, as agents ignore them.
	Pods  []*scenarios.Pod
	Rules []policy.Rule
	// Nodes lists every node name, so that nodes without pods get an entry.
	Nodes []string
}

// FromTopology builds the State of a scenario's topology: its cluster
// name, its label filter and its policies rendered into its namespaces as
// the harness writes them.
func FromTopology(s *scenarios.Scenario, t *scenarios.Topology) (*State, error) {
	f, err := identity.NewFilter(s.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agent.labelFilter: %w", err)
	}
	var nss []string
	for _, ns := range t.Namespaces {
		nss = append(nss, ns.Name)
	}
	var rules []policy.Rule
	for _, cnp := range policy.RenderAll(s.Policies, nss) {
		r, err := policy.Compile(&cnp)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r...)
	}
	st := &State{Cluster: s.Cluster.Name, Filter: f, Namespaces: t.Namespaces, Pods: t.Pods, Rules: rules}
	for _, n := range t.Nodes {
		st.Nodes = append(st.Nodes, n.Name)
	}
	return st, nil
}

// PodIdentityLabels computes a pod's identity labels from the state.
func (st *State) PodIdentityLabels(p *scenarios.Pod) (identity.Labels, error) {
	var nsLabels map[string]string
	found := false
	for _, ns := range st.Namespaces {
		if ns.Name == p.Namespace {
			nsLabels, found = ns.Labels, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("pod %s/%s: unknown namespace", p.Namespace, p.Name)
	}
	return identity.PodLabels(st.Filter, identity.PodInfo{
		Cluster: st.Cluster, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount,
		PodLabels: p.Labels, NamespaceLabels: nsLabels,
	}, nil), nil
}

// Compute returns the expected digests of every node.
func (st *State) Compute() (map[string]Expected, error) {
	type podInfo struct {
		pod *scenarios.Pod
		lh  LabelsHash
		li  int // index into sets
	}
	var ipc Digest
	setIdx := map[string]int{}
	var sets []identity.Labels
	var pods []podInfo
	for _, p := range st.Pods {
		if !p.IP.IsValid() {
			continue
		}
		l, err := st.PodIdentityLabels(p)
		if err != nil {
			return nil, err
		}
		key := l.Key()
		i, ok := setIdx[key]
		if !ok {
			i = len(sets)
			setIdx[key] = i
			sets = append(sets, l)
		}
		lh := HashLabelKey(key)
		ipc.Add(IPCacheEntry(p.IP, lh))
		pods = append(pods, podInfo{pod: p, lh: lh, li: i})
	}
	candidates := make([]policy.Candidate, len(sets))
	hashes := make([]LabelsHash, len(sets))
	for i, l := range sets {
		candidates[i] = policy.Candidate{ID: identity.ID(i + 1), Labels: l}
		hashes[i] = HashLabels(l)
	}
	// Endpoints with equal labels have equal allowed sets.
	allowed := make([][]PolicyEntry, len(sets))
	done := make([]bool, len(sets))
	pol := map[string]*Digest{}
	for _, n := range st.Nodes {
		pol[n] = &Digest{}
	}
	for _, pi := range pods {
		if !done[pi.li] {
			keys := policy.Resolve(st.Rules, candidates, sets[pi.li])
			allowed[pi.li] = Entries(keys, func(id identity.ID) (LabelsHash, bool) {
				if id == 0 {
					return 0, true
				}
				return hashes[id-1], true
			})
			done[pi.li] = true
		}
		d := pol[pi.pod.Node]
		if d == nil {
			d = &Digest{}
			pol[pi.pod.Node] = d
		}
		d.Merge(EndpointPolicy(pi.pod.IP, allowed[pi.li]))
	}
	out := make(map[string]Expected, len(pol))
	for n, d := range pol {
		out[n] = Expected{IPCache: ipc.String(), Policy: d.String()}
	}
	return out, nil
}

// Entries converts an endpoint's allowed keys into digest entries. used
// maps an identity to its labels hash and says whether it counts (some
// ipcache entry carries those labels); identity 0 is the wildcard of
// AllowAll.
func Entries(keys []policykey.Key, used func(identity.ID) (LabelsHash, bool)) []PolicyEntry {
	out := make([]PolicyEntry, 0, len(keys))
	for _, k := range keys {
		if k == policy.AllowAll {
			out = append(out, AllowAllEntry)
			continue
		}
		lh, ok := used(k.Identity)
		if !ok {
			continue
		}
		out = append(out, PolicyEntry{Labels: lh, Port: k.Port, Proto: k.Proto})
	}
	return out
}

// Mismatch describes a node whose report differs from the expectation.
type Mismatch struct {
	Node     string
	Want     Expected
	Got      Expected
	Reported bool
}

// Compare lists the nodes whose reports differ from want, sorted by node.
func Compare(want, got map[string]Expected) []Mismatch {
	var out []Mismatch
	for n, w := range want {
		g, ok := got[n]
		if !ok || g != w {
			out = append(out, Mismatch{Node: n, Want: w, Got: g, Reported: ok})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
