package fakeapi

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

var identitiesGVR = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}

// TestStateDirSurvivesRestart stands in for a kube-apiserver restarted
// over its etcd: a second server started over the first one's state
// directory, while the first still runs (as after a SIGKILL: nothing was
// flushed or compacted at exit), serves the same objects at the same
// resourceVersions with the same admin token and certificate; a watch from
// before the restart gets 410 Expired, a watch from the restored revision
// sees new writes, and a third server restores what the second wrote.
func TestStateDirSurvivesRestart(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	s1 := start(t, Config{StateDir: dir, CertDir: certs})
	cs1, dyn1 := clients(t, s1)
	ctx := t.Context()
	if _, err := cs1.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	}
	for _, p := range []*corev1.Pod{pod("p1", "n1"), pod("p2", "n2")} {
		if _, err := cs1.CoreV1().Pods("a").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p1, err := cs1.CoreV1().Pods("a").Patch(ctx, "p1", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"api"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs1.CoreV1().Pods("a").Delete(ctx, "p2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	id := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
		"metadata":        map[string]any{"name": "1234"},
		"security-labels": map[string]any{"k8s:app": "api"},
	}}
	if _, err := dyn1.Resource(identitiesGVR).Create(ctx, id, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := cs1.CoreV1().Pods("a").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldRV := p1.ResourceVersion // older than the last write

	s2 := start(t, Config{StateDir: dir, CertDir: certs})
	if s2.AdminToken() != s1.AdminToken() {
		t.Error("the restarted server has another admin token")
	}
	if !bytes.Equal(s2.CAData(), s1.CAData()) {
		t.Error("the restarted server has another certificate")
	}
	cs2, dyn2 := clients(t, s2)
	got, err := cs2.CoreV1().Pods("a").Get(ctx, "p1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("p1 after the restart: %v", err)
	}
	if got.ResourceVersion != p1.ResourceVersion || got.Labels["app"] != "api" || got.UID != p1.UID {
		t.Errorf("p1 after the restart: rv %s labels %v uid %s, want rv %s app=api uid %s", got.ResourceVersion, got.Labels, got.UID, p1.ResourceVersion, p1.UID)
	}
	if _, err := cs2.CoreV1().Pods("a").Get(ctx, "p2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("p2, deleted before the restart: %v, want NotFound", err)
	}
	byNode, err := cs2.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"})
	if err != nil || len(byNode.Items) != 1 {
		t.Errorf("pods on n1 after the restart: %v, %v; want p1 (the node index is restored)", byNode, err)
	}
	if _, err := dyn2.Resource(identitiesGVR).Get(ctx, "1234", metav1.GetOptions{}); err != nil {
		t.Errorf("identity 1234 after the restart: %v", err)
	}
	nss, err := cs2.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil || len(nss.Items) != 5 {
		t.Errorf("namespaces after the restart: %v, %v; want the 4 a cluster starts with and a, once each", nss, err)
	}

	w, err := cs2.CoreV1().Pods("a").Watch(ctx, metav1.ListOptions{ResourceVersion: oldRV})
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, w)
	w.Stop()
	if ev.Type != watch.Error || !apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) {
		t.Errorf("watch from before the restart (rv %s): %v %v, want ERROR 410 Expired", oldRV, ev.Type, ev.Object)
	}
	w, err = cs2.CoreV1().Pods("a").Watch(ctx, metav1.ListOptions{ResourceVersion: before.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p3, err := cs2.CoreV1().Pods("a").Create(ctx, pod("p3", "n1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "p3" {
		t.Errorf("watch from the restored revision: %v %v, want ADDED p3", ev.Type, ev.Object)
	}
	last, _ := strconv.ParseUint(before.ResourceVersion, 10, 64)
	if rv, _ := strconv.ParseUint(p3.ResourceVersion, 10, 64); rv <= last {
		t.Errorf("p3's resourceVersion %d is not after the restored %d", rv, last)
	}

	// A record cut short at the end of the log (a kill in the middle of
	// an append) is dropped; everything before it is restored.
	f, err := os.OpenFile(filepath.Join(dir, walFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s3 := start(t, Config{StateDir: dir})
	cs3, _ := clients(t, s3)
	if got, err := cs3.CoreV1().Pods("a").Get(ctx, "p3", metav1.GetOptions{}); err != nil || got.ResourceVersion != p3.ResourceVersion {
		t.Errorf("p3, written by the second server, after a third start: %v, %v", got, err)
	}
}

// TestNoStateDirForgets is the control: without a state directory a new
// server starts empty, with a new token.
func TestNoStateDirForgets(t *testing.T) {
	s1 := start(t, Config{})
	cs1, _ := clients(t, s1)
	if _, err := cs1.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, Config{})
	cs2, _ := clients(t, s2)
	if _, err := cs2.CoreV1().Namespaces().Get(t.Context(), "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace a on a second server without a state dir: %v, want NotFound", err)
	}
	if s1.AdminToken() == s2.AdminToken() {
		t.Error("two servers without a state dir share an admin token")
	}
}
