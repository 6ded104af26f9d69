package scenarios

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
)

// Labels every generated pod carries besides Workloads.PodLabels.
const (
	LabelApp             = "app"
	LabelPodTemplateHash = "pod-template-hash"
)

// DeploymentName is the name of deployment i of a namespace.
func DeploymentName(i int) string { return "deploy-" + strconv.Itoa(i) }

// DeploymentIndex parses a name made by DeploymentName.
func DeploymentIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "deploy-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || strconv.Itoa(i) != s {
		return 0, false
	}
	return i, true
}

// NodeName is the name of node i.
func NodeName(i int) string { return fmt.Sprintf("node-%04d", i) }

// ServiceAccountName is the name of service account i of a namespace.
func ServiceAccountName(i int) string { return "sa-" + strconv.Itoa(i) }

// Node is one generated node.
type Node struct {
	Index int
	Name  string
	// IP is the node's InternalIP (from 100.64.0.0/10; never contacted).
	IP netip.Addr
	// PodCIDR is the node's /24 of Cluster.PodCIDR.
	PodCIDR netip.Prefix
}

// Pod is one generated pod.
type Pod struct {
	Name           string
	Namespace      string
	Deployment     string
	ServiceAccount string
	Node           string
	NodeIndex      int
	IP             netip.Addr
	Labels         map[string]string
}

// Topology is the generated cluster: the same scenario and seed always give
// the same objects. It also allocates names, nodes and IPs for pods created
// later (scale and delete-pods steps), deterministically.
type Topology struct {
	Nodes      []Node
	Namespaces []Namespace
	Pods       []*Pod

	spec     *Scenario
	rng      *rand.Rand
	next     int       // spread cursor
	perNode  []int     // pods on each node
	freeIPs  [][]uint8 // per node, released host octets (LIFO)
	nextHost []int     // per node, next never-used host octet
	hashes   map[string]string
	names    map[string]bool
}

// Generate builds the initial topology of a defaulted, valid scenario.
func (s *Scenario) Generate() (*Topology, error) {
	base, err := netip.ParsePrefix(s.Cluster.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("cluster.podCIDR: %w", err)
	}
	base = base.Masked()
	t := &Topology{
		spec:     s,
		rng:      rand.New(rand.NewPCG(uint64(s.Seed), 0x5354414d50454445)),
		perNode:  make([]int, s.Cluster.Nodes),
		freeIPs:  make([][]uint8, s.Cluster.Nodes),
		nextHost: make([]int, s.Cluster.Nodes),
		hashes:   map[string]string{},
		names:    map[string]bool{},
	}
	b := base.Addr().As4()
	baseN := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	for i := 0; i < s.Cluster.Nodes; i++ {
		n := baseN + uint32(i)<<8
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), 0}), 24)
		nodeIP := uint32(100)<<24 | uint32(64)<<16 + uint32(i) + 1
		t.Nodes = append(t.Nodes, Node{
			Index:   i,
			Name:    NodeName(i),
			IP:      netip.AddrFrom4([4]byte{byte(nodeIP >> 24), byte(nodeIP >> 16), byte(nodeIP >> 8), byte(nodeIP)}),
			PodCIDR: cidr,
		})
		t.nextHost[i] = 1
	}
	for _, ns := range s.Cluster.Namespaces {
		t.Namespaces = append(t.Namespaces, Namespace{Name: ns.Name, Labels: copyMap(ns.Labels)})
	}
	w := s.Cluster.Workloads
	for _, ns := range s.Cluster.Namespaces {
		for d := 0; d < w.DeploymentsPerNamespace; d++ {
			for r := 0; r < w.Replicas; r++ {
				if _, err := t.AddPod(ns.Name, DeploymentName(d)); err != nil {
					return nil, err
				}
			}
		}
	}
	return t, nil
}

// PodTemplateHash is the pod-template-hash label of a deployment's pods.
func (t *Topology) PodTemplateHash(namespace, deployment string) string {
	key := namespace + "/" + deployment
	if h, ok := t.hashes[key]; ok {
		return h
	}
	f := fnv.New64a()
	fmt.Fprintf(f, "%d/%s", t.spec.Seed, key)
	h := encodeSuffix(f.Sum64(), 10)
	t.hashes[key] = h
	return h
}

// AddPod places a new pod of a deployment on a node and gives it an IP.
func (t *Topology) AddPod(namespace, deployment string) (*Pod, error) {
	di, ok := DeploymentIndex(deployment)
	if !ok {
		return nil, fmt.Errorf("add pod: bad deployment name %q", deployment)
	}
	node, err := t.pickNode()
	if err != nil {
		return nil, fmt.Errorf("add pod to %s/%s: %w", namespace, deployment, err)
	}
	var host int
	if free := t.freeIPs[node]; len(free) > 0 {
		host = int(free[len(free)-1])
		t.freeIPs[node] = free[:len(free)-1]
	} else {
		host = t.nextHost[node]
		t.nextHost[node]++
	}
	t.perNode[node]++
	a := t.Nodes[node].PodCIDR.Addr().As4()
	a[3] = byte(host)
	hash := t.PodTemplateHash(namespace, deployment)
	labels := copyMap(t.spec.Cluster.Workloads.PodLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelApp] = deployment
	labels[LabelPodTemplateHash] = hash
	name := deployment + "-" + hash + "-" + encodeSuffix(t.rng.Uint64(), 5)
	for t.names[namespace+"/"+name] {
		name = deployment + "-" + hash + "-" + encodeSuffix(t.rng.Uint64(), 5)
	}
	t.names[namespace+"/"+name] = true
	p := &Pod{
		Name:           name,
		Namespace:      namespace,
		Deployment:     deployment,
		ServiceAccount: ServiceAccountName(di % t.spec.Cluster.Workloads.ServiceAccounts),
		Node:           t.Nodes[node].Name,
		NodeIndex:      node,
		IP:             netip.AddrFrom4(a),
		Labels:         labels,
	}
	t.Pods = append(t.Pods, p)
	return p, nil
}

// RemovePod forgets a pod and releases its IP for reuse.
func (t *Topology) RemovePod(p *Pod) {
	for i, q := range t.Pods {
		if q == p {
			t.Pods = append(t.Pods[:i], t.Pods[i+1:]...)
			delete(t.names, p.Namespace+"/"+p.Name)
			t.perNode[p.NodeIndex]--
			t.freeIPs[p.NodeIndex] = append(t.freeIPs[p.NodeIndex], p.IP.As4()[3])
			return
		}
	}
}

func (t *Topology) pickNode() (int, error) {
	n := len(t.Nodes)
	limit := t.spec.Cluster.Placement.MaxPodsPerNode
	if limit > 254 {
		limit = 254
	}
	switch t.spec.Cluster.Placement.Strategy {
	case PlacementRandom:
		start := t.rng.IntN(n)
		for k := 0; k < n; k++ {
			if i := (start + k) % n; t.perNode[i] < limit {
				return i, nil
			}
		}
	default:
		for k := 0; k < n; k++ {
			i := t.next % n
			t.next++
			if t.perNode[i] < limit {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("every node already runs %d pods (cluster.placement.maxPodsPerNode)", limit)
}

// PodsOnNode returns the pods placed on node i.
func (t *Topology) PodsOnNode(i int) []*Pod {
	var out []*Pod
	for _, p := range t.Pods {
		if p.NodeIndex == i {
			out = append(out, p)
		}
	}
	return out
}

// Namespace returns the namespace called name.
func (t *Topology) Namespace(name string) (*Namespace, bool) {
	for i := range t.Namespaces {
		if t.Namespaces[i].Name == name {
			return &t.Namespaces[i], true
		}
	}
	return nil, false
}

const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// encodeSuffix renders v as n characters of the alphabet Kubernetes uses
// for generated name suffixes.
func encodeSuffix(v uint64, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = suffixAlphabet[v%uint64(len(suffixAlphabet))]
		v /= uint64(len(suffixAlphabet))
	}
	return string(b)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
