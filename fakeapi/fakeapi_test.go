package fakeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/internal/testenv"
)

func TestMain(m *testing.M) {
	if f := os.Getenv(benchServerEnv); f != "" {
		os.Exit(runBenchServer(f))
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*loggingT).flushDaemon"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
	)
}

var (
	cepGVR = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
	cidGVR = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
)

// start runs a server for the test and closes it at cleanup.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func clients(t testing.TB, s *Server) (*kubernetes.Clientset, *dynamic.DynamicClient) {
	t.Helper()
	cfg := s.RESTConfig()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dc
}

func pod(ns, name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
}

func cep(ns, name string, id int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"status":   map[string]any{"id": int64(1), "identity": map[string]any{"id": id}},
	}}
}

func TestTypedClient(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	ctx := t.Context()

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, node := range []string{"n1", "n1", "n2"} {
		p := pod("ns1", fmt.Sprintf("p%d", i), node, map[string]string{"app": "web", "i": fmt.Sprint(i)})
		p.Status.PodIP = "10.0.0.99" // reset by the server on create
		got, err := cs.CoreV1().Pods("ns1").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.PodIP != "" || got.Status.Phase != corev1.PodPending {
			t.Errorf("create kept status %+v, want it reset to Pending", got.Status)
		}
		if got.UID == "" || got.ResourceVersion == "" || got.CreationTimestamp.IsZero() || got.Generation != 1 {
			t.Errorf("server-set metadata missing: %+v", got.ObjectMeta)
		}
		got.Status.PodIP = fmt.Sprintf("10.0.0.%d", i+1)
		got.Status.Phase = corev1.PodRunning
		up, err := cs.CoreV1().Pods("ns1").UpdateStatus(ctx, got, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if up.Status.PodIP != got.Status.PodIP || up.Generation != 1 {
			t.Errorf("UpdateStatus: podIP %q generation %d", up.Status.PodIP, up.Generation)
		}
	}
	list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 || list.Items[0].Name != "p0" || list.Items[1].Name != "p1" {
		t.Errorf("fieldSelector spec.nodeName=n1: got %d items", len(list.Items))
	}
	if list.Items[0].Status.PodIP != "10.0.0.1" {
		t.Errorf("podIP after UpdateStatus = %q", list.Items[0].Status.PodIP)
	}
	list, err = cs.CoreV1().Pods("ns1").List(ctx, metav1.ListOptions{LabelSelector: "app=web,i in (1,2)"})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("labelSelector: %d items, %v", len(list.Items), err)
	}

	// Update with a stale resourceVersion is a 409 Conflict.
	p0, err := cs.CoreV1().Pods("ns1").Get(ctx, "p0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p0.Labels["v"] = "1"
	if _, err := cs.CoreV1().Pods("ns1").Update(ctx, p0, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p0.Labels["v"] = "2"
	_, err = cs.CoreV1().Pods("ns1").Update(ctx, p0, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		t.Errorf("stale update: got %v, want Conflict", err)
	}
	// Create of an existing name is AlreadyExists; of a missing namespace NotFound.
	if _, err := cs.CoreV1().Pods("ns1").Create(ctx, pod("ns1", "p0", "n1", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("duplicate create: got %v, want AlreadyExists", err)
	}
	if _, err := cs.CoreV1().Pods("nope").Create(ctx, pod("nope", "x", "n1", nil), metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("create in missing namespace: got %v, want NotFound", err)
	}
	// generateName.
	g := pod("ns1", "", "n1", nil)
	g.GenerateName = "gen-"
	gp, err := cs.CoreV1().Pods("ns1").Create(ctx, g, metav1.CreateOptions{})
	if err != nil || !strings.HasPrefix(gp.Name, "gen-") || len(gp.Name) != len("gen-")+5 {
		t.Errorf("generateName: %v %q", err, gp.GetName())
	}
	// Strategic merge patch of a built-in type.
	pp, err := cs.CoreV1().Pods("ns1").Patch(ctx, "p1", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"patched":"yes"}}}`), metav1.PatchOptions{})
	if err != nil || pp.Labels["patched"] != "yes" || pp.Labels["app"] != "web" {
		t.Errorf("strategic merge patch: %v %v", err, pp.GetLabels())
	}
	// Delete with a stale precondition is a conflict; then it works.
	stale := "1"
	err = cs.CoreV1().Pods("ns1").Delete(ctx, "p1", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &stale}})
	if !apierrors.IsConflict(err) {
		t.Errorf("delete with stale precondition: %v", err)
	}
	if err := cs.CoreV1().Pods("ns1").Delete(ctx, "p1", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pp.UID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("ns1").Get(ctx, "p1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v", err)
	}
	// deletecollection with a selector.
	if err := cs.CoreV1().Pods("ns1").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"}); err != nil {
		t.Fatal(err)
	}
	list, err = cs.CoreV1().Pods("ns1").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "p2" {
		t.Errorf("after deletecollection: %d items %v", len(list.Items), err)
	}
	// Discovery works for typed clients.
	if _, err := cs.Discovery().ServerPreferredResources(); err != nil {
		t.Errorf("discovery: %v", err)
	}
}

func TestDynamicClientCRDs(t *testing.T) {
	s := start(t, Config{})
	_, dc := clients(t, s)
	ctx := t.Context()
	ceps := dc.Resource(cepGVR).Namespace("default")
	obj, err := ceps.Create(ctx, cep("default", "cep1", 100), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// CiliumEndpoint has no status subresource: the create keeps status
	// and agents JSON-patch /status on the main resource.
	if id, _, _ := unstructured.NestedInt64(obj.Object, "status", "identity", "id"); id != 100 {
		t.Errorf("created CEP identity = %d, want 100", id)
	}
	patched, err := ceps.Patch(ctx, "cep1", types.JSONPatchType, []byte(`[{"op":"replace","path":"/status","value":{"id":1,"identity":{"id":200}}}]`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _ := unstructured.NestedInt64(patched.Object, "status", "identity", "id"); id != 200 {
		t.Errorf("patched CEP identity = %d, want 200", id)
	}
	if patched.GetGeneration() != 2 {
		t.Errorf("generation after status patch without status subresource = %d, want 2", patched.GetGeneration())
	}
	_, err = ceps.Patch(ctx, "cep1", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
	if !apierrors.IsUnsupportedMediaType(err) {
		t.Errorf("strategic merge patch of a CRD: %v, want 415", err)
	}
	mp, err := ceps.Patch(ctx, "cep1", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
	if err != nil || mp.GetLabels()["a"] != "b" {
		t.Errorf("merge patch: %v", err)
	}
	_, err = ceps.Patch(ctx, "cep1", types.JSONPatchType, []byte(`[{"op":"test","path":"/status/id","value":7}]`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("failing JSON patch test op: %v, want 422", err)
	}

	// CiliumIdentity has a status subresource: create drops status,
	// UpdateStatus writes only status, and status does not bump generation.
	cids := dc.Resource(cidGVR)
	cid := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
		"metadata":        map[string]any{"name": "12345"},
		"security-labels": map[string]any{"k8s:app": "web"},
		"status":          map[string]any{"x": "y"},
	}}
	got, err := cids.Create(ctx, cid, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Object["status"]; ok {
		t.Errorf("create kept status of a resource with a status subresource")
	}
	got.Object["status"] = map[string]any{"x": "z"}
	got.Object["security-labels"] = map[string]any{"k8s:app": "ignored"}
	st, err := cids.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(st.Object, "status", "x"); v != "z" {
		t.Errorf("status after UpdateStatus = %q", v)
	}
	if v, _, _ := unstructured.NestedString(st.Object, "security-labels", "k8s:app"); v != "web" {
		t.Errorf("UpdateStatus changed the main resource: %q", v)
	}
	if st.GetGeneration() != 1 {
		t.Errorf("generation after status update = %d, want 1", st.GetGeneration())
	}
	list, err := dc.Resource(cepGVR).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list CEPs: %v %d", err, len(list.Items))
	}
	if err := ceps.Delete(ctx, "cep1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// CiliumEndpointSlices are served at cilium.io/v2alpha1.
	ces := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice",
		"metadata":  map[string]any{"name": "ces-1"},
		"namespace": "default",
		"endpoints": []any{map[string]any{"name": "cep1", "id": int64(5)}},
	}}
	if _, err := dc.Resource(schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumendpointslices"}).Create(ctx, ces, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestInformer(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "before", "n1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=n1" }))
	inf := factory.Core().V1().Pods().Informer()
	var mu sync.Mutex
	seen := map[string]string{}
	changed := make(chan struct{}, 100)
	record := func(what string, obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			mu.Lock()
			seen[p.Name] = what
			mu.Unlock()
		}
		changed <- struct{}{}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { record("add", o) },
		UpdateFunc: func(_, o any) { record("update", o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			record("delete", o)
		},
	})
	factory.Start(ctx.Done())
	defer func() { cancel(); factory.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "after", "n1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "elsewhere", "n2", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "before", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "after", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"before": "update", "after": "delete"}
	timeout := time.After(20 * time.Second)
	for {
		mu.Lock()
		done := seen["before"] == want["before"] && seen["after"] == want["after"]
		_, leaked := seen["elsewhere"]
		mu.Unlock()
		if leaked {
			t.Fatal("informer with spec.nodeName=n1 saw a pod of n2")
		}
		if done {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("informer saw %v, want %v", seen, want)
		}
	}
}

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	return watch.Event{}
}

func TestWatchResumeAnd410(t *testing.T) {
	s := start(t, Config{WatchHistory: 20})
	_, dc := clients(t, s)
	ctx := t.Context()
	ceps := dc.Resource(cepGVR).Namespace("default")
	list, err := ceps.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ceps.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ceps.Create(ctx, cep("default", "a", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, w)
	if ev.Type != watch.Added || ev.Object.(*unstructured.Unstructured).GetName() != "a" {
		t.Fatalf("first event %v", ev.Type)
	}
	lastRV := ev.Object.(*unstructured.Unstructured).GetResourceVersion()
	w.Stop()
	// Changes while no one watches.
	if _, err := ceps.Create(ctx, cep("default", "b", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ceps.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err = ceps.Watch(ctx, metav1.ListOptions{ResourceVersion: lastRV})
	if err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, w)
	if ev.Type != watch.Added || ev.Object.(*unstructured.Unstructured).GetName() != "b" {
		t.Errorf("resumed watch: first event %v %v, want ADDED b", ev.Type, ev.Object)
	}
	ev = nextEvent(t, w)
	if ev.Type != watch.Deleted || ev.Object.(*unstructured.Unstructured).GetName() != "a" {
		t.Errorf("resumed watch: second event %v, want DELETED a", ev.Type)
	}
	w.Stop()
	// Push lastRV out of the retained history: 410 Gone (Expired).
	for i := range 30 {
		if _, err := ceps.Patch(ctx, "b", types.MergePatchType, []byte(fmt.Sprintf(`{"status":{"id":%d}}`, i)), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err = ceps.Watch(ctx, metav1.ListOptions{ResourceVersion: lastRV})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev = nextEvent(t, w)
	if ev.Type != watch.Error || !apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) {
		t.Errorf("watch from a compacted RV: %v %v, want ERROR 410 Expired", ev.Type, ev.Object)
	}
}

func TestWatchBookmarksAndLabelTransitions(t *testing.T) {
	s := start(t, Config{BookmarkInterval: 50 * time.Millisecond})
	cs, _ := clients(t, s)
	ctx := t.Context()
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=web", AllowWatchBookmarks: true, ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "p", "n1", map[string]string{"app": "db"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"web"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"db"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var types_ []watch.EventType
	bookmark := false
	for len(types_) < 2 || !bookmark {
		ev := nextEvent(t, w)
		if ev.Type == watch.Bookmark {
			bookmark = true
			continue
		}
		types_ = append(types_, ev.Type)
	}
	if types_[0] != watch.Added || types_[1] != watch.Deleted {
		t.Errorf("label selector transitions: %v, want [ADDED DELETED]", types_)
	}
}

func TestSlowWatcherIsClosed(t *testing.T) {
	s := start(t, Config{WatchHistory: 100, WatchBuffer: 10})
	cs, _ := clients(t, s)
	ctx := t.Context()
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	waitFor(t, func() bool { return metricValue(t, s, "apiserver_longrunning_requests", `resource="configmaps"`) == 1 })
	// Append 20 events while the watcher cannot run: it is then 20 behind.
	st := s.storeFor("", "v1", "configmaps")
	st.mu.Lock()
	for i := range 20 {
		rv := st.rv.Add(1)
		e := newEvent(eventAdded, fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c%d","namespace":"default","resourceVersion":"%d"}}`, i, rv), "default", fmt.Sprintf("c%d", i), nil, "", rv, nil)
		st.objs[e.obj.key] = e.obj
		st.appendLocked(e)
	}
	st.mu.Unlock()
	for range w.ResultChan() {
		t.Error("a watcher 20 events behind with a buffer of 10 got an event")
	}
	if got := metricValue(t, s, "apiserver_terminated_watchers_total", `resource="configmaps"`); got != 1 {
		t.Errorf("apiserver_terminated_watchers_total = %v, want 1", got)
	}
}

// TestResumedWatchReplaysHistory checks that a watch resumed from a
// resourceVersion further behind than WatchBuffer gets the retained events
// (as from kube-apiserver's watch cache) instead of being closed at once.
func TestResumedWatchReplaysHistory(t *testing.T) {
	s := start(t, Config{WatchHistory: 100, WatchBuffer: 10})
	cs, _ := clients(t, s)
	ctx := t.Context()
	var first string
	for i := range 30 {
		cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = cm.ResourceVersion
		}
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: first})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i := 1; i < 30; i++ {
		ev := nextEvent(t, w)
		if cm, ok := ev.Object.(*corev1.ConfigMap); ev.Type != watch.Added || !ok || cm.Name != fmt.Sprintf("c%d", i) {
			t.Fatalf("event %d: %v %v, want ADDED c%d", i, ev.Type, ev.Object, i)
		}
	}
	if got := metricValue(t, s, "apiserver_terminated_watchers_total", ""); got != 0 {
		t.Errorf("%v watchers terminated", got)
	}
}

// waitFor polls cond (a condition on server state that has no channel).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue sums the samples of a metric whose labels contain match.
func metricValue(t *testing.T, s *Server, name, match string) float64 {
	t.Helper()
	mfs, err := gatherers(s.cfg.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if !strings.Contains(strings.Join(labels, ","), match) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func TestConcurrentWritersLoseNoUpdate(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	ctx := t.Context()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "counter", Namespace: "default"}, Data: map[string]string{"n": "0"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	var conflicts sync.Map
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					cur, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "counter", metav1.GetOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					var n int
					if _, err := fmt.Sscan(cur.Data["n"], &n); err != nil {
						t.Error(err)
						return
					}
					cur.Data["n"] = fmt.Sprint(n + 1)
					_, err = cs.CoreV1().ConfigMaps("default").Update(ctx, cur, metav1.UpdateOptions{})
					if apierrors.IsConflict(err) {
						conflicts.Store(w, true)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "counter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["n"] != fmt.Sprint(writers*each) {
		t.Errorf("counter = %s, want %d: an update was lost", got.Data["n"], writers*each)
	}
}

// TestConcurrentPatchesLoseNoUpdate has writers patch the same object at
// once without preconditions, each adding its own annotation: the store
// decodes and patches outside its lock and commits only if the object is
// still the one it patched, so every annotation must survive.
func TestConcurrentPatchesLoseNoUpdate(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	ctx := t.Context()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "patched", Namespace: "default"}}
	created, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"w%d-%d":"x"}}}`, w, i)
				if _, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "patched", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "patched", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Annotations); n != writers*each {
		t.Errorf("%d annotations, want %d: a patch was lost", n, writers*each)
	}
	rv0, err0 := strconv.ParseUint(created.ResourceVersion, 10, 64)
	rv1, err1 := strconv.ParseUint(got.ResourceVersion, 10, 64)
	if err0 != nil || err1 != nil || rv1-rv0 != writers*each {
		t.Errorf("resourceVersion went from %d to %d, want %d updates", rv0, rv1, writers*each)
	}
}

func TestPagination(t *testing.T) {
	s := start(t, Config{})
	_, dc := clients(t, s)
	ctx := t.Context()
	ceps := dc.Resource(cepGVR).Namespace("default")
	for i := range 25 {
		if _, err := ceps.Create(ctx, cep("default", fmt.Sprintf("c%02d", i), int64(i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 10}
	pages := 0
	for {
		l, err := ceps.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range l.Items {
			names = append(names, it.GetName())
		}
		if l.GetContinue() == "" {
			break
		}
		opts.Continue = l.GetContinue()
	}
	if pages != 3 || len(names) != 25 || names[0] != "c00" || names[24] != "c24" {
		t.Errorf("pages %d names %v", pages, names)
	}
	// RV=0 is served in full from the cache, ignoring limit.
	l, err := ceps.List(ctx, metav1.ListOptions{Limit: 10, ResourceVersion: "0"})
	if err != nil || len(l.Items) != 25 {
		t.Errorf("RV=0 list: %v %d items", err, len(l.Items))
	}
	if _, err := ceps.List(ctx, metav1.ListOptions{Continue: "garbage"}); !apierrors.IsBadRequest(err) {
		t.Errorf("bad continue token: %v", err)
	}
}

// rawRequest sends one request as the admin and returns status and body.
func rawRequest(t *testing.T, s *Server, method, path, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	return rawRequestAs(t, s, s.AdminToken(), method, path, contentType, body)
}

func rawRequestAs(t *testing.T, s *Server, token, method, path, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestErrors(t *testing.T) {
	s := start(t, Config{MaxBodyBytes: 1 << 20})
	code, _, _ := rawRequest(t, s, "POST", "/api/v1/namespaces/default/configmaps", "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep"},"data":{"a":"b"}}`))
	if code != 201 {
		t.Fatalf("create: %d", code)
	}
	big := append([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"`), bytes.Repeat([]byte("x"), 2<<20)...)
	big = append(big, `"}}`...)
	cases := []struct {
		name, method, path, ct, body string
		code                         int
		reason                       metav1.StatusReason
		cause                        string
	}{
		{"malformed JSON", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":`, 400, metav1.StatusReasonBadRequest, ""},
		{"not an object", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `[1,2]`, 400, metav1.StatusReasonBadRequest, ""},
		{"wrong kind", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"wrong apiVersion", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"labels of the wrong type", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":["a"]}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"invalid name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}`, 422, metav1.StatusReasonInvalid, "metadata.name"},
		{"missing name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`, 422, metav1.StatusReasonInvalid, "metadata.name"},
		{"invalid label", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a b":"c"}}}`, 422, metav1.StatusReasonInvalid, "metadata.labels"},
		{"namespace mismatch", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"name mismatch", "PUT", "/api/v1/namespaces/default/configmaps/keep", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}`, 400, metav1.StatusReasonBadRequest, ""},
		{"body too large", "POST", "/api/v1/namespaces/default/configmaps", "application/json", string(big), 413, metav1.StatusReasonRequestEntityTooLarge, ""},
		{"bad label selector", "GET", "/api/v1/pods?labelSelector=a%20in%20(", "", "", 400, metav1.StatusReasonBadRequest, ""},
		{"unsupported field selector", "GET", "/api/v1/configmaps?fieldSelector=spec.nodeName%3Dx", "", "", 400, metav1.StatusReasonBadRequest, ""},
		{"bad JSON patch", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/json-patch+json", `{"op":"add"}`, 400, metav1.StatusReasonBadRequest, ""},
		{"JSON patch of a missing path", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/json-patch+json", `[{"op":"replace","path":"/nope/x","value":1}]`, 422, metav1.StatusReasonInvalid, "patch"},
		{"patch changing the kind", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/merge-patch+json", `{"kind":"Pod"}`, 400, metav1.StatusReasonBadRequest, ""},
		{"server-side apply", "PATCH", "/api/v1/namespaces/default/configmaps/keep", "application/apply-patch+yaml", `{}`, 415, metav1.StatusReasonUnsupportedMediaType, ""},
		{"unknown resource", "GET", "/api/v1/secrets", "", "", 404, metav1.StatusReasonNotFound, ""},
		{"missing object", "GET", "/api/v1/namespaces/default/configmaps/nope", "", "", 404, metav1.StatusReasonNotFound, ""},
		{"status of a resource without it", "PUT", "/apis/cilium.io/v2/namespaces/default/ciliumendpoints/x/status", "application/json", `{}`, 404, metav1.StatusReasonNotFound, ""},
		{"bad resourceVersion", "GET", "/api/v1/pods?resourceVersion=abc", "", "", 422, metav1.StatusReasonInvalid, "resourceVersion"},
		{"too large resourceVersion", "GET", "/api/v1/pods?resourceVersion=999999&resourceVersionMatch=NotOlderThan", "", "", 504, metav1.StatusReasonTimeout, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := rawRequest(t, s, tc.method, tc.path, tc.ct, []byte(tc.body))
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("response is not a Status: %v: %s", err, body)
			}
			if code != tc.code || st.Code != int32(tc.code) || st.Reason != tc.reason || st.Kind != "Status" {
				t.Errorf("got %d %s (Status code %d kind %q), want %d %s: %s", code, st.Reason, st.Code, st.Kind, tc.code, tc.reason, st.Message)
			}
			if tc.cause != "" {
				found := false
				if st.Details != nil {
					for _, c := range st.Details.Causes {
						found = found || strings.HasPrefix(c.Field, tc.cause)
					}
				}
				if !found {
					t.Errorf("no cause for field %s in %+v", tc.cause, st.Details)
				}
			}
		})
	}
	// Nothing above changed the stored object.
	code, _, body := rawRequest(t, s, "GET", "/api/v1/namespaces/default/configmaps/keep", "", nil)
	if code != 200 || !bytes.Contains(body, []byte(`"data":{"a":"b"}`)) {
		t.Errorf("stored object changed: %d %s", code, body)
	}
	if n := metricValue(t, s, "stampede_fakeapi_handler_panics_total", ""); n != 0 {
		t.Errorf("%v handler panics", n)
	}
}

func TestAuth(t *testing.T) {
	tokens, err := parseTokens(strings.NewReader("# agents\nagent-tok,node:n1,1,\"system:nodes,agents\"\nreader-tok,reader,2\n"), "tokens.csv")
	if err != nil {
		t.Fatal(err)
	}
	rules := []Rule{
		{Groups: []string{"agents"}, Verbs: []string{"*"}, APIGroups: []string{"cilium.io"}, Resources: []string{"ciliumendpoints"}},
		{Users: []string{"reader", "node:n1"}, Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
	}
	s := start(t, Config{Tokens: tokens, Rules: rules})
	cep := []byte(`{"apiVersion":"cilium.io/v2","kind":"CiliumEndpoint","metadata":{"name":"x"}}`)
	cases := []struct {
		name, token, method, path string
		body                      []byte
		code                      int
	}{
		{"no token", "", "GET", "/api/v1/pods", nil, 401},
		{"bad token", "nope", "GET", "/api/v1/pods", nil, 401},
		{"reader lists", "reader-tok", "GET", "/api/v1/pods", nil, 200},
		{"reader discovers", "reader-tok", "GET", "/apis", nil, 200},
		{"reader cannot write", "reader-tok", "POST", "/apis/cilium.io/v2/namespaces/default/ciliumendpoints", cep, 403},
		{"agent writes CEPs", "agent-tok", "POST", "/apis/cilium.io/v2/namespaces/default/ciliumendpoints", cep, 201},
		{"agent cannot write pods", "agent-tok", "DELETE", "/api/v1/namespaces/default/pods/x", nil, 403},
		{"admin may do anything", s.AdminToken(), "DELETE", "/apis/cilium.io/v2/namespaces/default/ciliumendpoints/x", nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := rawRequestAs(t, s, tc.token, tc.method, tc.path, "application/json", tc.body)
			if code != tc.code {
				t.Errorf("got %d, want %d: %s", code, tc.code, body)
			}
			if code == 403 && !bytes.Contains(body, []byte(`cannot`)) {
				t.Errorf("403 without an RBAC-like message: %s", body)
			}
		})
	}
	by := s.RequestsByUser()
	if by["node:n1"] != 2 || by["reader"] != 3 || by["nobody"] != 0 {
		t.Errorf("RequestsByUser = %v", by)
	}
	if v := metricValue(t, s, "stampede_fakeapi_requests_by_user_total", `user="node:n1"`); v != 2 {
		t.Errorf("stampede_fakeapi_requests_by_user_total{user=node:n1} = %v", v)
	}
	// Per verb and resource: denied requests count, discovery does not.
	want := map[RequestKey]int64{
		{User: "reader", Verb: "list", Group: "", Resource: "pods"}:                        1,
		{User: "reader", Verb: "create", Group: "cilium.io", Resource: "ciliumendpoints"}:  1,
		{User: "node:n1", Verb: "create", Group: "cilium.io", Resource: "ciliumendpoints"}: 1,
		{User: "node:n1", Verb: "delete", Group: "", Resource: "pods"}:                     1,
		{User: AdminUser, Verb: "delete", Group: "cilium.io", Resource: "ciliumendpoints"}: 1,
	}
	got := s.RequestCounts()
	for k := range got {
		if k.User == AdminUser && k.Verb != "delete" {
			delete(got, k) // the test helpers' own requests
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("RequestCounts (-want +got):\n%s", d)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	if _, err := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, body := rawRequestAs(t, s, "", "GET", "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 1`,
		`apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1",le="0.005"}`,
		`apiserver_current_inflight_requests{request_kind="mutating"} 0`,
		`apiserver_storage_objects{resource="namespaces"} 4`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _, _ := rawRequestAs(t, s, "", "GET", "/debug/pprof/", "", nil); code != 200 {
		t.Errorf("pprof: %d", code)
	}
}

func TestPlainHTTPAndKubeconfig(t *testing.T) {
	s := start(t, Config{PlainHTTP: true})
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}
	cs, _ := clients(t, s)
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		testenv.Skip(t, "kubectl not on PATH")
	}
	s := start(t, Config{})
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := s.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), kubectl, append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	manifest := `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: a}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  endpointSelector: {matchLabels: {app: web}}
`
	run(manifest, "apply", "-f", "-")
	if out := run(manifest, "apply", "-f", "-"); !strings.Contains(out, "unchanged") {
		t.Errorf("second apply: %s", out)
	}
	run("", "-n", "shop", "create", "configmap", "cfg", "--from-literal=k=v")
	if out := run("", "get", "ns", "shop", "--show-labels"); !strings.Contains(out, "team=a") {
		t.Errorf("get ns: %s", out)
	}
	run("", "label", "ns", "shop", "team=b", "--overwrite")
	run("", "-n", "shop", "patch", "cnp", "allow-web", "--type=merge", "-p", `{"metadata":{"labels":{"x":"y"}}}`)
	run("", "-n", "shop", "patch", "configmap", "cfg", "-p", `{"data":{"k":"w"}}`)
	if out := run("", "-n", "shop", "get", "configmap", "cfg", "-o", "jsonpath={.data.k}"); out != "w" {
		t.Errorf("configmap after strategic patch: %q", out)
	}
	if out := run("", "get", "cnp", "-A"); !strings.Contains(out, "allow-web") {
		t.Errorf("get cnp: %s", out)
	}
	run("", "-n", "shop", "delete", "cnp", "allow-web")
	if out := run("", "get", "cnp", "-A"); strings.Contains(out, "allow-web") {
		t.Errorf("cnp still there after delete: %s", out)
	}
	if out := run("", "get", "ns", "shop", "-o", "jsonpath={.metadata.labels.team}"); out != "b" {
		t.Errorf("label after kubectl label: %q", out)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"buffer above history", Config{WatchHistory: 5, WatchBuffer: 6}, "watchBuffer"},
		{"empty token", Config{Tokens: []Token{{User: "u"}}}, "tokens[0]"},
		{"unknown verb", Config{Rules: []Rule{{Users: []string{"u"}, Verbs: []string{"fly"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}, "rules[0].verbs[0]"},
		{"rule without subject", Config{Rules: []Rule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}, "rules[0]: needs users or groups"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if _, err := parseTokens(strings.NewReader("tok,user\n"), "t.csv"); err == nil || !strings.Contains(err.Error(), "t.csv:1") {
		t.Errorf("short token line: %v", err)
	}
	p := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(p, []byte("- users: [a]\n  verbz: [get]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAuthzFile(p); err == nil || !strings.Contains(err.Error(), "verbz") {
		t.Errorf("authz file with unknown field: %v", err)
	}
}

func TestNodeIndexedWatch(t *testing.T) {
	s := start(t, Config{WatchHistory: 1000, WatchBuffer: 10})
	cs, _ := clients(t, s)
	ctx := t.Context()
	w, err := cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1", ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Far more events of other nodes than the watcher's buffer: an idle
	// node watcher is not woken for them and is not closed.
	for i := range 150 {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", fmt.Sprintf("other-%d", i), "n2", nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "mine", "n1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, w)
	if p, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Added || !ok || p.Name != "mine" {
		t.Fatalf("node watcher got %v %v, want ADDED mine", ev.Type, ev.Object)
	}
	// Moving a pod onto the node is an ADDED for the node's watcher.
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "other-3", types.MergePatchType, []byte(`{"spec":{"nodeName":"n1"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, w)
	if p, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Added || !ok || p.Name != "other-3" {
		t.Fatalf("node watcher got %v, want ADDED other-3", ev.Type)
	}
	if got := metricValue(t, s, "apiserver_terminated_watchers_total", ""); got != 0 {
		t.Errorf("%v watchers terminated", got)
	}
}

func TestRunAnnouncesAndStops(t *testing.T) {
	dir := t.TempDir()
	readyFile, kc := filepath.Join(dir, "ready.json"), filepath.Join(dir, "kubeconfig")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{CertDir: dir}, RunOptions{ReadyFile: readyFile, KubeconfigOut: kc, Stdout: io.Discard})
	}()
	a, err := ready.Wait(ctx, readyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.Endpoints["api"], "https://127.0.0.1:") || a.Endpoints["metrics"] != a.Endpoints["api"]+"/metrics" || a.Extra["ca"] != filepath.Join(dir, "ca.crt") {
		t.Errorf("announcement %+v", a)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("client from the written kubeconfig: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A client left at client-go's default protobuf content type still works:
// built-in bodies are decoded from protobuf and answers are JSON.
func TestProtobufClient(t *testing.T) {
	s := start(t, Config{})
	cfg := s.RESTConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", "pb", "n1", map[string]string{"a": "b"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["a"] != "b" || p.Spec.NodeName != "n1" {
		t.Errorf("created from protobuf: %+v", p.ObjectMeta)
	}
	ev := nextEvent(t, w)
	if got, ok := ev.Object.(*corev1.Pod); !ok || got.Name != "pb" {
		t.Errorf("watch event %v %T", ev.Type, ev.Object)
	}
	l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 {
		t.Errorf("list: %v", err)
	}
}

func TestNodeWaiterSweep(t *testing.T) {
	var rv atomic.Uint64
	st := newStore(builtinResources()[1], &rv, 10, time.Now)
	st.mu.Lock()
	defer st.mu.Unlock()
	appendPod := func(node string) {
		r := rv.Add(1)
		st.appendLocked(newEvent(eventAdded, []byte(`{}`), "default", fmt.Sprintf("p%d", r), nil, node, r, nil))
	}
	mine := st.nodeWaiterLocked("n1")
	appendPod("n2")
	select {
	case <-mine:
		t.Fatal("woken by another node's event")
	default:
	}
	appendPod("n1")
	select {
	case <-mine:
	default:
		t.Fatal("not woken by its node's event")
	}
	// An idle node's watcher is woken every half ring so it never falls
	// out of the history.
	idle := st.nodeWaiterLocked("n9")
	for range 5 {
		appendPod("n2")
	}
	select {
	case <-idle:
	default:
		t.Fatal("idle node watcher not swept after half the ring")
	}
}

// Watchers read the ring without the store's lock; readEvents must refuse
// events the ring no longer holds, including a slot the writer reused
// after the watcher read head.
func TestReadEventsWithoutLock(t *testing.T) {
	var rv atomic.Uint64
	st := newStore(builtinResources()[1], &rv, 4, time.Now)
	add := func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		r := rv.Add(1)
		st.appendLocked(newEvent(eventAdded, []byte(`{}`), "default", fmt.Sprintf("p%d", r), nil, "", r, nil))
	}
	wake := st.notifyChan()
	for range 6 {
		add()
	}
	select {
	case <-wake:
	default:
		t.Fatal("the channel loaded before the events was not closed")
	}
	head := st.head.Load()
	if head != 6 {
		t.Fatalf("head %d, want 6", head)
	}
	got, ok := st.readEvents(nil, 2, head)
	if !ok || len(got) != 4 {
		t.Fatalf("events 2..5: ok=%v, %d events, want 4", ok, len(got))
	}
	for i, e := range got {
		if e.seq != uint64(2+i) || e.obj.rv != uint64(3+i) {
			t.Errorf("event %d: seq %d rv %d, want seq %d rv %d", i, e.seq, e.obj.rv, 2+i, 3+i)
		}
	}
	if _, ok := st.readEvents(nil, 1, head); ok {
		t.Error("event 1 was evicted, but readEvents returned it")
	}
	// The watcher read head=6; the writer then reuses the slot of event 2.
	add()
	if _, ok := st.readEvents(nil, 2, head); ok {
		t.Error("the slot of event 2 holds event 6, but readEvents accepted it")
	}
	if got, ok := st.readEvents(nil, 3, st.head.Load()); !ok || len(got) != 4 {
		t.Errorf("events 3..6: ok=%v, %d events", ok, len(got))
	}
}
