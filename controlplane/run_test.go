package controlplane_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*loggingT).flushDaemon"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
	)
}

var (
	gvrCNP = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	gvrCID = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
	gvrCEP = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
	gvrCES = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumendpointslices"}
)

const cpToken = "controlplane-token"

// cluster is a fakeapi server seeded with a scenario's topology.
type cluster struct {
	api  *fakeapi.Server
	core kubernetes.Interface
	dyn  dynamic.Interface
	sc   *scenarios.Scenario
	topo *scenarios.Topology

	filter *identity.Filter
}

func startCluster(t *testing.T, name string, seedPods bool) *cluster {
	t.Helper()
	api, err := fakeapi.New(fakeapi.Config{Tokens: []fakeapi.Token{{Token: cpToken, User: "controlplane"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := api.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		api.Close()
	})
	rc := api.RESTConfig()
	rc.QPS, rc.Burst = -1, 0
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scenarios.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{api: api, core: core, dyn: dyn, sc: sc, topo: topo}
	c.seed(t, seedPods)
	return c
}

func (c *cluster) seed(t *testing.T, pods bool) {
	t.Helper()
	ctx := t.Context()
	var nss []string
	for _, ns := range c.topo.Namespaces {
		nss = append(nss, ns.Name)
		if _, err := c.core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: ns.Labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, cnp := range policy.RenderAll(c.sc.Policies, nss) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cnp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.dyn.Resource(gvrCNP).Namespace(cnp.Metadata.Namespace).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if !pods {
		return
	}
	// Create pods concurrently, a few at a time.
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 16)
	for _, p := range c.topo.Pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			obj := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
				Spec:       corev1.PodSpec{NodeName: p.Node, ServiceAccountName: p.ServiceAccount, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
				Status:     corev1.PodStatus{PodIP: p.IP.String(), Phase: corev1.PodRunning},
			}
			// Like the kubelet: create, then report the IP in status.
			created, err := c.core.CoreV1().Pods(p.Namespace).Create(ctx, obj, metav1.CreateOptions{})
			if err == nil {
				created.Status = obj.Status
				_, err = c.core.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
			}
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// relabel applies the scenario's relabel step to the API server and to
// the topology.
func (c *cluster) relabel(t *testing.T) {
	t.Helper()
	for _, st := range c.sc.Steps {
		if st.Relabel == nil {
			continue
		}
		for i := range c.topo.Namespaces {
			ns := &c.topo.Namespaces[i]
			maps.Copy(ns.Labels, st.Relabel.Set)
			for _, k := range st.Relabel.Remove {
				delete(ns.Labels, k)
			}
			obj, err := c.core.CoreV1().Namespaces().Get(t.Context(), ns.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			obj.Labels = maps.Clone(ns.Labels)
			if _, err := c.core.CoreV1().Namespaces().Update(t.Context(), obj, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	t.Fatal("no relabel step")
}

// wantLabels is the expected identity label set (sorted strings) of a pod.
func (c *cluster) wantLabels(t *testing.T, p *scenarios.Pod) string {
	t.Helper()
	ns, _ := c.topo.Namespace(p.Namespace)
	if c.filter == nil {
		f, err := identity.NewFilter(c.sc.Agent.LabelFilter)
		if err != nil {
			t.Fatal(err)
		}
		c.filter = f
	}
	l := identity.PodLabels(c.filter, identity.PodInfo{Cluster: c.sc.Cluster.Name, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount, PodLabels: p.Labels, NamespaceLabels: ns.Labels}, nil)
	ss := make([]string, len(l))
	for i, x := range l {
		ss[i] = x.String()
	}
	slices.Sort(ss)
	return strings.Join(ss, ",")
}

func restConfig(c *cluster) *rest.Config {
	return &rest.Config{Host: c.api.URL(), BearerToken: cpToken, TLSClientConfig: rest.TLSClientConfig{CAData: c.api.CAData()}}
}

// runControlplane runs controlplane.Run until the returned stop is called.
func runControlplane(t *testing.T, c *cluster, mode scenarios.Mode, xdsListen string) (ready.Announcement, func()) {
	t.Helper()
	rf := filepath.Join(t.TempDir(), "ready.json")
	rc := restConfig(c)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{Mode: mode, Scenario: c.sc, REST: rc, XDSListen: xdsListen, ReadyFile: rf})
		close(exited)
	}()
	a, err := ready.Wait(ctx, rf, exited)
	if err != nil {
		cancel()
		t.Fatalf("controlplane: %v (%v)", err, <-done)
	}
	return a, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controlplane: %v", err)
		}
	}
}

// sink is a hand-written xdsclient.Sink recording the state.
type sink struct {
	mu    sync.Mutex
	ids   map[uint32]string
	hosts map[uint32][]netip.Addr
	pols  map[string]bool
	eps   map[string]xdsclient.Endpoint
}

func newSink() *sink {
	return &sink{ids: map[uint32]string{}, hosts: map[uint32][]netip.Addr{}, pols: map[string]bool{}, eps: map[string]xdsclient.Endpoint{}}
}

func (s *sink) UpsertIdentity(id uint32, l []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[id] = strings.Join(l, ",")
	return nil
}
func (s *sink) DeleteIdentity(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
	return nil
}
func (s *sink) SetIdentityHosts(id uint32, a []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[id] = a
	return nil
}
func (s *sink) DeleteIdentityHosts(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hosts, id)
	return nil
}
func (s *sink) UpsertPolicy(ns, name string, _ []policy.Rule) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pols[ns+"/"+name] = true
	return nil
}
func (s *sink) DeletePolicy(ns, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pols, ns+"/"+name)
	return nil
}
func (s *sink) SetEndpoint(ep xdsclient.Endpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eps[ep.Namespace+"/"+ep.Name] = ep
	return nil
}
func (s *sink) DeleteEndpoint(ns, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.eps, ns+"/"+name)
	return nil
}
func (s *sink) Applied(string, string) {}

// converged says whether the agent of node holds exactly the cluster's
// state: its own endpoints with identities whose labels are right, every
// pod address under its identity, every policy.
func (s *sink) converged(t *testing.T, c *cluster, node string, labelsOf map[*scenarios.Pod]string, policies int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pols) != policies {
		return fmt.Errorf("%d policies, want %d", len(s.pols), policies)
	}
	idOf := map[string]uint32{}
	for id, l := range s.ids {
		if _, dup := idOf[l]; dup {
			return fmt.Errorf("two identities for %s", l)
		}
		idOf[l] = id
	}
	own := 0
	hostCount := 0
	idOfIP := map[netip.Addr]uint32{}
	for id, h := range s.hosts {
		hostCount += len(h)
		for _, a := range h {
			idOfIP[a] = id
		}
	}
	if hostCount != len(c.topo.Pods) {
		return fmt.Errorf("%d host addresses, want %d", hostCount, len(c.topo.Pods))
	}
	for _, p := range c.topo.Pods {
		id, ok := idOf[labelsOf[p]]
		if !ok {
			return fmt.Errorf("no identity for pod %s/%s labels", p.Namespace, p.Name)
		}
		if idOfIP[p.IP] != id {
			return fmt.Errorf("pod %s/%s address %s not under identity %d", p.Namespace, p.Name, p.IP, id)
		}
		if p.Node != node {
			continue
		}
		own++
		ep, ok := s.eps[p.Namespace+"/"+p.Name]
		if !ok || ep.IP != p.IP || ep.Identity != id {
			return fmt.Errorf("endpoint %s/%s = %+v, want ip %s identity %d", p.Namespace, p.Name, ep, p.IP, id)
		}
	}
	if len(s.eps) != own {
		return fmt.Errorf("%d endpoints, want %d (only the node's own)", len(s.eps), own)
	}
	return nil
}

// waitPersisted waits until the CiliumIdentities are exactly one per label
// set of the pods (persistIdentities).
func (c *cluster) waitPersisted(t *testing.T) {
	t.Helper()
	podLabels := map[string]*scenarios.Pod{}
	for _, p := range c.topo.Pods {
		podLabels[c.wantLabels(t, p)] = p
	}
	eventually(t, 2*time.Minute, "persisted identities", func() error {
		got := c.cidsByLabels(t)
		for l, p := range podLabels {
			if n := len(got[l]); n != 1 {
				return fmt.Errorf("%d CiliumIdentities for pod %s/%s's labels, want 1", n, p.Namespace, p.Name)
			}
		}
		if len(got) != len(podLabels) {
			return fmt.Errorf("%d label sets have CiliumIdentities, want %d", len(got), len(podLabels))
		}
		return nil
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

func (c *cluster) waitAgents(t *testing.T, sinks map[string]*sink) {
	t.Helper()
	labelsOf := map[*scenarios.Pod]string{}
	for _, p := range c.topo.Pods {
		labelsOf[p] = c.wantLabels(t, p)
	}
	policies := len(c.sc.Policies) * len(c.topo.Namespaces)
	for node, s := range sinks {
		eventually(t, 2*time.Minute, "agent "+node+" converged", func() error { return s.converged(t, c, node, labelsOf, policies) })
	}
}

// TestXDSRelabelSmallConverges runs the xds control plane against fakeapi
// with relabel-small, one ADS client per node: every agent converges
// before and after the namespace relabel and after a control-plane
// restart with a change in between, and only the control plane (never an
// agent) made API requests.
func TestXDSRelabelSmallConverges(t *testing.T) {
	c := startCluster(t, "relabel-small", true)
	c.sc.ControlPlane.XDS.PersistIdentities = true
	a, stop := runControlplane(t, c, scenarios.ModeXDS, "127.0.0.1:0")
	addr := a.Endpoints["xds"]
	if addr == "" || a.Endpoints["metrics"] == "" {
		stop()
		t.Fatalf("announcement %+v lacks xds or metrics", a)
	}
	ctx, cancelAgents := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	sinks := map[string]*sink{}
	clients := map[string]*xdsclient.Client{}
	for _, n := range c.topo.Nodes {
		s := newSink()
		sinks[n.Name] = s
		cl, err := xdsclient.New(xdsclient.Config{Server: addr, Node: n.Name, Sink: s, MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		clients[n.Name] = cl
		wg.Add(1)
		go func() { defer wg.Done(); cl.Run(ctx) }()
	}
	defer func() { cancelAgents(); wg.Wait() }()

	c.waitAgents(t, sinks)
	// persistIdentities: the control plane wrote one CiliumIdentity per
	// label set, with the IDs the agents hold.
	c.waitPersisted(t)
	c.relabel(t)
	c.waitAgents(t, sinks)
	c.waitPersisted(t)

	// Restart the control plane on the same address with a change made
	// while it is down: a pod is deleted.
	stop()
	upserts := map[string]uint64{}
	for n, cl := range clients {
		upserts[n] = cl.Stats().Upserts
	}
	victim := c.topo.Pods[0]
	if err := c.core.CoreV1().Pods(victim.Namespace).Delete(t.Context(), victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.topo.RemovePod(victim)
	_, stop2 := runControlplane(t, c, scenarios.ModeXDS, addr)
	defer stop2()
	c.waitAgents(t, sinks)
	// The new control plane kept every identity (persisted) and the agents
	// resumed with their resource versions: only what changed while it was
	// down (one identity's addresses) was sent again.
	for n, cl := range clients {
		if got := cl.Stats().Upserts - upserts[n]; got > 2 {
			t.Errorf("agent %s: %d resources sent again after the restart, want at most 2", n, got)
		}
	}

	for user, n := range c.api.RequestsByUser() {
		if user != "controlplane" && !strings.Contains(user, "admin") {
			t.Errorf("user %q made %d API requests; only the control plane (and the test's admin) may", user, n)
		}
	}
	if c.api.RequestsByUser()["controlplane"] == 0 {
		t.Error("the control plane made no API request")
	}
}

// TestRunBadKnobLeavesNoGoroutine: a function that cannot be built makes
// Run return an error with nothing left running. Run used to start the
// identity GC before building the CES controller and return without
// waiting for it (STYLE.md rule 3).
func TestRunBadKnobLeavesNoGoroutine(t *testing.T) {
	tests := []struct {
		name string
		mode scenarios.Mode
		edit func(*scenarios.Scenario, *controlplane.Config)
		want string
	}{
		{"ces after identity gc", scenarios.ModeCES, func(s *scenarios.Scenario, _ *controlplane.Config) {
			s.ControlPlane.CES.MaxEndpointsPerSlice = 0
		}, "controlPlane.ces"},
		{"operator after identity gc", scenarios.ModeOperator, func(s *scenarios.Scenario, _ *controlplane.Config) {
			s.Agent.LabelFilter = []string{"k8s:(["}
		}, "agent.labelFilter"},
		{"xds listen", scenarios.ModeXDS, func(_ *scenarios.Scenario, c *controlplane.Config) {
			c.XDSListen = "127.0.0.1:notaport"
		}, "xds listen"},
		{"metrics listen", scenarios.ModeCRD, func(_ *scenarios.Scenario, c *controlplane.Config) {
			c.MetricsListen = "127.0.0.1:notaport"
		}, "metrics listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := scenarios.Builtin("relabel-small")
			if err != nil {
				t.Fatal(err)
			}
			// Nothing may reach the API server: the URL leads nowhere.
			cfg := controlplane.Config{Mode: tt.mode, Scenario: sc, REST: &rest.Config{Host: "http://127.0.0.1:1"}}
			tt.edit(sc, &cfg)
			err = controlplane.Run(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			if g := runGoroutines(); g != "" {
				t.Fatalf("Run returned with its goroutines still running:\n%s", g)
			}
		})
	}
}

// runGoroutines returns the stacks of goroutines running code of package
// controlplane or internal/daemon, other than the caller's.
func runGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:goruntime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		if strings.Contains(g, "stampede/controlplane.") || strings.Contains(g, "stampede/internal/daemon.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
