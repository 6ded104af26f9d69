package controlplane_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

var gvrCN = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}

// runSlim runs the control plane in mode with CiliumEndpointSlices built
// from pods until the returned stop is called.
func runSlim(t *testing.T, c *cluster, mode scenarios.Mode) (ready.Announcement, func()) {
	t.Helper()
	rf := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- controlplane.Run(ctx, controlplane.Config{Mode: mode, Scenario: c.sc, REST: restConfig(c), ReadyFile: rf, CESSource: controlplane.CESSourcePods})
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

// testPod is a pod the slim tests create, with its status as the kubelet
// reports it.
type testPod struct {
	ns, name, node, ip, hostIP string
	hostNetwork                bool
	labels                     map[string]string
}

func (c *cluster) createPod(t *testing.T, p testPod) {
	t.Helper()
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
		Spec: corev1.PodSpec{NodeName: p.node, HostNetwork: p.hostNetwork, ServiceAccountName: "sa-" + p.name,
			Containers: []corev1.Container{{Name: "c", Image: "pause", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
	}
	created, err := c.core.CoreV1().Pods(p.ns).Create(t.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}}, HostIP: p.hostIP}
	if _, err := c.core.CoreV1().Pods(p.ns).UpdateStatus(t.Context(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) createCiliumNode(t *testing.T, name string) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"addresses": []any{map[string]any{"type": "InternalIP", "ip": "100.64.0.1"}}},
	}}
	if _, err := c.dyn.Resource(gvrCN).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPodCID creates CiliumIdentity id with the identity labels of a
// pod of the cluster's namespace ns.
func (c *cluster) createPodCID(t *testing.T, id int, p testPod) {
	t.Helper()
	f, err := identity.NewFilter(c.sc.Agent.LabelFilter)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.core.CoreV1().Namespaces().Get(t.Context(), p.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := identity.PodLabels(f, identity.PodInfo{Cluster: c.sc.Cluster.Name, Namespace: p.ns, ServiceAccount: "sa-" + p.name, PodLabels: p.labels, NamespaceLabels: ns.Labels}, nil)
	cid := identity.NewCiliumIdentity(identity.ID(id), l)
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.dyn.Resource(gvrCID).Create(t.Context(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sliceMember is an endpoint as a slice carries it.
type sliceMember struct {
	id             int64
	ip, node, sa   string
	namedPorts     int
	sliceNamespace string
}

// sliceMembers lists every slice member by "namespace/name"; a member in
// two slices fails the test.
func (c *cluster) sliceMembers(t *testing.T) map[string]sliceMember {
	t.Helper()
	list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]sliceMember{}
	for _, it := range list.Items {
		ns, _, _ := unstructured.NestedString(it.Object, "namespace")
		eps, _, _ := unstructured.NestedSlice(it.Object, "endpoints")
		for _, e := range eps {
			em := e.(map[string]any)
			name, _ := em["name"].(string)
			var m sliceMember
			m.sliceNamespace = ns
			m.id, _, _ = unstructured.NestedInt64(em, "id")
			m.node, _, _ = unstructured.NestedString(em, "networking", "node")
			addr, _, _ := unstructured.NestedSlice(em, "networking", "addressing")
			if len(addr) == 1 {
				m.ip, _ = addr[0].(map[string]any)["ipv4"].(string)
			}
			m.sa, _ = em["service-account"].(string)
			np, _, _ := unstructured.NestedSlice(em, "named-ports")
			m.namedPorts = len(np)
			if _, dup := out[ns+"/"+name]; dup {
				t.Fatalf("endpoint %s/%s in two slices", ns, name)
			}
			out[ns+"/"+name] = m
		}
	}
	return out
}

// waitEvents waits until the control plane's informers have seen at least
// n events of resource, so that a check for something not written is not
// made before the controller could have written it.
func waitEvents(t *testing.T, metrics, resource string, n float64) {
	t.Helper()
	eventually(t, 30*time.Second, "control plane saw "+resource, func() error {
		if got := metricSum(t, metrics, "stampede_controlplane_watch_events_total", `resource="`+resource+`"`); got < n {
			return fmt.Errorf("%g %s events, want %g", got, resource, n)
		}
		return nil
	})
}

// The slim source writes a pod into a slice only once every part of its
// member is known: its identity (a CiliumIdentity with its labels), its
// node's CiliumNode; a host-network pod is never placed.
func TestSlimCESWritesPodsOnceComplete(t *testing.T) {
	tests := []struct {
		name string
		// before is created before the control plane starts, after once
		// it has run a few batches without writing the pod.
		before, after func(*testing.T, *cluster, testPod)
		hostNetwork   bool
	}{
		{
			name:   "identity appears",
			before: func(t *testing.T, c *cluster, p testPod) { c.createCiliumNode(t, p.node) },
			after:  func(t *testing.T, c *cluster, p testPod) { c.createPodCID(t, 300, p) },
		},
		{
			name:   "CiliumNode appears",
			before: func(t *testing.T, c *cluster, p testPod) { c.createPodCID(t, 300, p) },
			after:  func(t *testing.T, c *cluster, p testPod) { c.createCiliumNode(t, p.node) },
		},
		{
			name: "host network",
			before: func(t *testing.T, c *cluster, p testPod) {
				c.createCiliumNode(t, p.node)
				c.createPodCID(t, 300, p)
			},
			after:       func(*testing.T, *cluster, testPod) {},
			hostNetwork: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startCluster(t, "relabel-small", false)
			c.sc.ControlPlane.CES.BatchInterval = scenarios.D(50 * time.Millisecond)
			c.sc.ControlPlane.IdentityGC.Interval = scenarios.D(time.Hour)
			ns := c.topo.Namespaces[0].Name
			pod := testPod{ns: ns, name: "p", node: "node-0000", ip: "10.0.0.7", hostIP: "100.64.0.1", hostNetwork: tt.hostNetwork, labels: map[string]string{"app": "a"}}
			// A complete pod beside it shows that the controller writes.
			witness := testPod{ns: ns, name: "w", node: "node-0001", ip: "10.0.1.7", hostIP: "100.64.0.2", labels: map[string]string{"app": "w"}}
			c.createPod(t, pod)
			c.createPod(t, witness)
			c.createCiliumNode(t, witness.node)
			c.createPodCID(t, 400, witness)
			tt.before(t, c, pod)
			a, stop := runSlim(t, c, scenarios.ModeCES)
			defer stop()
			waitEvents(t, a.Endpoints["metrics"], "pods", 2)
			eventually(t, 30*time.Second, "witness written", func() error {
				if _, ok := c.sliceMembers(t)[ns+"/w"]; !ok {
					return fmt.Errorf("witness not in a slice: %v", c.sliceMembers(t))
				}
				return nil
			})
			time.Sleep(4 * c.sc.ControlPlane.CES.BatchInterval.Duration)
			if m, ok := c.sliceMembers(t)[ns+"/p"]; ok {
				t.Fatalf("pod written before it is complete: %+v", m)
			}
			tt.after(t, c, pod)
			if tt.hostNetwork {
				time.Sleep(10 * c.sc.ControlPlane.CES.BatchInterval.Duration)
				if m, ok := c.sliceMembers(t)[ns+"/p"]; ok {
					t.Fatalf("host-network pod in a slice: %+v", m)
				}
				return
			}
			eventually(t, 30*time.Second, "pod written", func() error {
				m, ok := c.sliceMembers(t)[ns+"/p"]
				switch {
				case !ok:
					return fmt.Errorf("pod not in a slice")
				case m.id != 300 || m.ip != pod.ip || m.node != pod.hostIP || m.sa != "" || m.namedPorts != 1 || m.sliceNamespace != ns:
					// No service account: the reference CRD has no such
					// field (ces_pods.go, endpointLocked).
					return fmt.Errorf("member %+v, want id 300, ip %s, node %s, no service account, one named port", m, pod.ip, pod.hostIP)
				}
				return nil
			})
		})
	}
}

// slimCluster is relabel-small with its pods as the kubelet reports them
// (status.podIPs and status.hostIP) and a CiliumNode per node, as agents
// create them.
func slimCluster(t *testing.T) *cluster {
	t.Helper()
	c := startCluster(t, "relabel-small", false)
	// Every fifth pod: all namespaces, nodes and label sets, in a fifth
	// of the set-up time under -race.
	var pods []*scenarios.Pod
	for i, p := range c.topo.Pods {
		if i%5 == 0 {
			pods = append(pods, p)
		}
	}
	c.topo.Pods = pods
	for _, n := range c.topo.Nodes {
		c.createCiliumNode(t, n.Name)
	}
	hostIP := map[string]string{}
	for _, n := range c.topo.Nodes {
		hostIP[n.Name] = n.IP.String()
	}
	work := make(chan *scenarios.Pod)
	errs := make(chan error, len(c.topo.Pods))
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				obj := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
					Spec:       corev1.PodSpec{NodeName: p.Node, ServiceAccountName: p.ServiceAccount, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
				}
				created, err := c.core.CoreV1().Pods(p.Namespace).Create(t.Context(), obj, metav1.CreateOptions{})
				if err == nil {
					created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP.String(), PodIPs: []corev1.PodIP{{IP: p.IP.String()}}, HostIP: hostIP[p.Node]}
					_, err = c.core.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), created, metav1.UpdateOptions{})
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, p := range c.topo.Pods {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Test-sized rates: the release's write and client limits would make
	// the 2,000 pods' slices take minutes under -race.
	c.sc.ControlPlane.CES.WriteQPS, c.sc.ControlPlane.CES.WriteBurst = 1000, 1000
	c.sc.ControlPlane.ClientQPS, c.sc.ControlPlane.ClientBurst = 1000, 1000
	c.sc.ControlPlane.CES.BatchInterval = scenarios.D(50 * time.Millisecond)
	return c
}

// slimConverged checks that every pod is in exactly one slice with the
// identity whose labels are the pod's, as the operator created it.
func (c *cluster) slimConverged(t *testing.T) func() error {
	labelsOf := map[*scenarios.Pod]string{}
	for _, p := range c.topo.Pods {
		labelsOf[p] = c.wantLabels(t, p)
	}
	return func() error {
		byLabels := c.cidsByLabels(t)
		members := c.sliceMembers(t)
		for _, p := range c.topo.Pods {
			want := byLabels[labelsOf[p]]
			if len(want) != 1 {
				return fmt.Errorf("pod %s/%s: identities %v for its labels", p.Namespace, p.Name, want)
			}
			m, ok := members[p.Namespace+"/"+p.Name]
			if !ok {
				return fmt.Errorf("pod %s/%s in no slice", p.Namespace, p.Name)
			}
			if strconv.FormatInt(m.id, 10) != want[0] || m.ip != p.IP.String() {
				return fmt.Errorf("pod %s/%s: member %+v, want identity %s ip %s", p.Namespace, p.Name, m, want[0], p.IP)
			}
		}
		if len(members) != len(c.topo.Pods) {
			return fmt.Errorf("%d slice members, want %d", len(members), len(c.topo.Pods))
		}
		return nil
	}
}

// With operator identities and slim slices (the ces-slim preset's control
// plane) a namespace relabel rewrites the slices with the pods' new
// identities, and no CiliumEndpoint exists at any point.
func TestSlimCESFollowsNamespaceRelabel(t *testing.T) {
	c := slimCluster(t)
	c.sc.ControlPlane.CES.BatchInterval = scenarios.D(50 * time.Millisecond)
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.D(time.Hour)
	_, stop := runSlim(t, c, scenarios.ModeOperator)
	defer stop()
	eventually(t, 2*time.Minute, "slices before relabel", c.slimConverged(t))
	before := c.sliceMembers(t)
	c.relabel(t)
	eventually(t, 2*time.Minute, "slices after relabel", c.slimConverged(t))
	changed := 0
	for k, m := range c.sliceMembers(t) {
		if before[k].id != m.id {
			changed++
		}
	}
	if changed != len(c.topo.Pods) {
		t.Errorf("%d of %d members changed identity on the relabel", changed, len(c.topo.Pods))
	}
	ceps, err := c.dyn.Resource(gvrCEP).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ceps.Items) != 0 {
		t.Errorf("%d CiliumEndpoints exist", len(ceps.Items))
	}
}

// With slim slices no CiliumEndpoint carries an identity, so the identity
// GC must count the identities slice members carry (crd_gc.go with CES
// enabled): every identity in use survives two heartbeat timeouts, while
// an unused one is deleted (so the GC did run). Without the slice check
// every identity in use is deleted after one timeout.
func TestSlimCESIdentityGCKeepsIdentitiesInSlices(t *testing.T) {
	c := slimCluster(t)
	c.sc.ControlPlane.CES.BatchInterval = scenarios.D(50 * time.Millisecond)
	// A timeout long enough for the first slices to be written after the
	// operator creates the identities (until then nothing uses them, in
	// Cilium too), short enough for the test.
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.D(200 * time.Millisecond)
	c.sc.ControlPlane.IdentityGC.HeartbeatTimeout = scenarios.D(10 * time.Second)
	c.createCID(t, 60000, "unused")
	_, stop := runSlim(t, c, scenarios.ModeOperator)
	defer stop()
	eventually(t, 2*time.Minute, "slices", c.slimConverged(t))
	inUse := map[string]bool{}
	for _, m := range c.sliceMembers(t) {
		inUse[strconv.FormatInt(m.id, 10)] = true
	}
	eventually(t, 30*time.Second, "unused identity deleted", func() error {
		if _, err := c.dyn.Resource(gvrCID).Get(t.Context(), "60000", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("identity 60000 still exists")
		}
		return nil
	})
	time.Sleep(2 * c.sc.ControlPlane.IdentityGC.HeartbeatTimeout.Duration)
	list, err := c.dyn.Resource(gvrCID).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An identity may have been marked for deletion in the moment
	// between its creation and the first write of a slice carrying it
	// (so may Cilium's); what counts is that it is never deleted.
	left := map[string]bool{}
	for _, it := range list.Items {
		left[it.GetName()] = true
	}
	for id := range inUse {
		if !left[id] {
			t.Errorf("identity %s in use by slices was deleted (left: %v)", id, slicesOf(left))
		}
	}
	if err := c.slimConverged(t)(); err != nil {
		t.Errorf("after the GC runs: %v", err)
	}
}

func slicesOf(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

// Bad CES source settings fail Run with the field or option named, before
// anything reaches the API server.
func TestSlimCESConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		mode   scenarios.Mode
		source string
		edit   func(*scenarios.Scenario)
		want   string
	}{
		{"identity slicing", scenarios.ModeCES, controlplane.CESSourcePods, func(s *scenarios.Scenario) { s.ControlPlane.CES.SliceMode = scenarios.SliceModeIdentity },
			"controlPlane.ces.sliceMode"},
		{"unknown source", scenarios.ModeCES, "endpoints", func(*scenarios.Scenario) {}, `unknown CES source "endpoints"`},
		{"pods in xds mode", scenarios.ModeXDS, controlplane.CESSourcePods, func(*scenarios.Scenario) {}, "need CiliumIdentity objects"},
		{"bad label filter", scenarios.ModeCES, controlplane.CESSourcePods, func(s *scenarios.Scenario) { s.Agent.LabelFilter = []string{"k8s:(["} },
			"agent.labelFilter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := scenarios.Builtin("relabel-small")
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(sc)
			err = controlplane.Run(t.Context(), controlplane.Config{Mode: tt.mode, Scenario: sc, REST: &rest.Config{Host: "http://127.0.0.1:1"}, CESSource: tt.source})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			if g := runGoroutines(); g != "" {
				t.Fatalf("Run returned with its goroutines still running:\n%s", g)
			}
		})
	}
}
