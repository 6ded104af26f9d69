package harness

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/stampede-sim/stampede/harness/manifests"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestServiceAccountName(t *testing.T) {
	tests := []struct {
		u    User
		want string
	}{
		{User{Name: "stampede-admin", Role: RoleAdmin}, "admin"},
		{User{Name: "system:serviceaccount:kube-system:cilium-operator", Role: RoleOperator}, "operator"},
		{User{Name: "node:Node_7", Role: RoleAgent}, "node-node-7"},
		{User{Name: "node:" + strings.Repeat("a", 80), Role: RoleAgent}, "node-" + strings.Repeat("a", 58)},
	}
	for _, tt := range tests {
		if got := serviceAccountName(tt.u); got != tt.want {
			t.Errorf("serviceAccountName(%q) = %q, want %q", tt.u.Name, got, tt.want)
		}
	}
}

func TestKubeconfigBackendConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  KubeconfigConfig
		want string
	}{
		{"no path", KubeconfigConfig{}, "no kubeconfig path"},
		{"bad run id", KubeconfigConfig{Path: "x", RunID: "Bad_ID"}, `run ID "Bad_ID"`},
		{"missing file", KubeconfigConfig{Path: "/nonexistent/kubeconfig", RunID: "r"}, "load /nonexistent/kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewKubeconfigBackend(tt.cfg).Start(t.Context(), BackendEnv{Dir: t.TempDir(), Mode: scenarios.ModeCRD, Users: localUsers(scenarios.ModeCRD)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestKubeconfigBackendOnLocal uses a local kube-apiserver as "an existing
// cluster": CRDs are installed only with the flag, users get TokenRequest
// tokens with the mode's RBAC, and clean-up deletes exactly the run's
// objects.
func TestKubeconfigBackendOnLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; -short")
	}
	bin := requireKubeAPIServer(t)
	exe := stampedeBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	local := NewLocalBackend(LocalConfig{KubeAPIServer: bin, Progress: io.Discard, EtcdUnsafeNoFsync: true})
	cluster, err := local.Start(ctx, BackendEnv{Dir: t.TempDir(), Mode: scenarios.ModeCRD, Users: localUsers(scenarios.ModeCRD), Executable: exe})
	if err != nil {
		t.Fatalf("start local: %v", err)
	}
	defer func() {
		if err := local.Stop(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("stop local: %v", err)
		}
	}()
	owner := restConfig(cluster, localUsers(scenarios.ModeCRD)[0].Token)
	cs := kubernetes.NewForConfigOrDie(owner)
	dyn := dynamic.NewForConfigOrDie(owner)

	// The cluster lacks one CRD, and has things that are not ours.
	crds := dyn.Resource(manifests.CRDResource)
	if err := crds.Delete(ctx, "ciliumnodes.cilium.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(ctx, t, crds, "ciliumnodes.cilium.io")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bystander"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bystander"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cidGVR := gvrOf("ciliumidentities")
	bystanderCID := toUnstructured(t, identity.NewCiliumIdentity(90001, identity.Labels{{Source: identity.SourceK8s, Key: "app", Value: "bystander"}}))
	if _, err := dyn.Resource(cidGVR).Create(ctx, bystanderCID, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	nsCtx, nsStop := context.WithCancel(ctx)
	nsDone := make(chan struct{})
	go func() {
		defer close(nsDone)
		finalizeEmptyNamespaces(nsCtx, cs, dyn)
	}()
	defer func() { nsStop(); <-nsDone }()

	users := localUsers(scenarios.ModeCRD)
	env := func() BackendEnv {
		return BackendEnv{Dir: t.TempDir(), Mode: scenarios.ModeCRD, Users: users}
	}

	// Without the flag: a clear error naming it.
	_, err = NewKubeconfigBackend(KubeconfigConfig{Path: cluster.Kubeconfig, RunID: "noflag"}).Start(ctx, env())
	if err == nil || !strings.Contains(err.Error(), InstallCRDsFlag) || !strings.Contains(err.Error(), "ciliumnodes.cilium.io") {
		t.Fatalf("Start without %s: %v, want an error naming the flag and the missing CRD", InstallCRDsFlag, err)
	}

	kb := NewKubeconfigBackend(KubeconfigConfig{Path: cluster.Kubeconfig, RunID: "t2", InstallCRDs: true})
	api, err := kb.Start(ctx, env())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got, want := api.Facts["cleanup.budget"], cleanupBudget(0).String(); got != want {
		t.Errorf("fact cleanup.budget = %q, want %q (no scenario: nothing created)", got, want)
	}
	if len(api.Tokens) != len(users) || api.ObjectLabels[RunLabel] != "t2" {
		t.Fatalf("Tokens %d (want %d), ObjectLabels %v", len(api.Tokens), len(users), api.ObjectLabels)
	}
	ns := kb.Namespace()

	// The issued tokens carry the mode's permissions.
	agent := dynamic.NewForConfigOrDie(restConfig(api, api.Tokens[users[2].Name]))
	if _, err := agent.Resource(gvrOf("ciliumendpoints")).Namespace(ns).Create(ctx, cepObject(t, ns, "pod-a", 70001), metav1.CreateOptions{}); err != nil {
		t.Errorf("agent create CiliumEndpoint: %v, want allowed", err)
	}
	wantForbidden(t, "agent create CiliumEndpointSlice", func() error {
		_, err := agent.Resource(gvrOf("ciliumendpointslices")).Create(ctx, cesObject(t, "ces-t2", ns), metav1.CreateOptions{})
		return err
	})
	runAdmin := dynamic.NewForConfigOrDie(restConfig(api, api.Tokens[users[0].Name]))
	labelled := toUnstructured(t, identity.NewCiliumIdentity(90002, identity.Labels{{Source: identity.SourceK8s, Key: "app", Value: "run"}}))
	labelled.SetLabels(map[string]string{RunLabel: "t2", "app": "run"})
	if _, err := runAdmin.Resource(cidGVR).Create(ctx, labelled, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create CiliumIdentity: %v", err)
	}
	node := toUnstructured(t, map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
		"metadata": map[string]any{"name": "cn-t2", "labels": map[string]any{RunLabel: "t2"}}})
	if _, err := runAdmin.Resource(gvrOf("ciliumnodes")).Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create CiliumNode (installed CRD): %v", err)
	}

	// The API server's metrics are scraped with the run's admin token.
	if u := api.MetricsURLs["apiserver"]; u == "" {
		t.Error("no apiserver metrics URL")
	} else {
		hc, err := fanoutHTTPClient(api.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		if body := getWithToken(ctx, t, hc(), u, api.Tokens[users[0].Name]); !strings.Contains(body, "apiserver_request_duration_seconds_bucket") {
			t.Errorf("metrics at %s lack apiserver_request_duration_seconds_bucket", u)
		}
	}

	// The mode's end gives Stop a deadline meant for stopping processes;
	// the clean-up keeps its own budget, so even a passed deadline does
	// not cut it short.
	passed, cancelPassed := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelPassed()
	if err := kb.Stop(passed); err != nil {
		t.Fatalf("Stop with a passed deadline: %v", err)
	}

	// The run's objects are gone...
	gone := func(what string, err error) {
		t.Helper()
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s still exists after Stop: %v", what, err)
		}
	}
	_, err = dyn.Resource(cidGVR).Get(ctx, "90002", metav1.GetOptions{})
	gone("labelled CiliumIdentity", err)
	for _, suffix := range []string{"agent", "operator", "admin"} {
		_, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, "stampede-t2:"+suffix, metav1.GetOptions{})
		gone("ClusterRoleBinding stampede-t2:"+suffix, err)
	}
	_, err = cs.RbacV1().ClusterRoles().Get(ctx, "stampede-t2:agent", metav1.GetOptions{})
	gone("ClusterRole stampede-t2:agent", err)
	waitGone(ctx, t, crds, "ciliumnodes.cilium.io")
	_, err = cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	gone("namespace "+ns, err)
	_, err = dyn.Resource(gvrOf("ciliumendpoints")).Namespace(ns).Get(ctx, "pod-a", metav1.GetOptions{})
	gone("CiliumEndpoint "+ns+"/pod-a", err)
	// ... and nothing else is.
	if _, err := dyn.Resource(cidGVR).Get(ctx, "90001", metav1.GetOptions{}); err != nil {
		t.Errorf("unlabelled CiliumIdentity deleted: %v", err)
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, "bystander", metav1.GetOptions{}); err != nil || n.DeletionTimestamp != nil {
		t.Errorf("namespace bystander touched: %v", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "bystander", metav1.GetOptions{}); err != nil {
		t.Errorf("ClusterRole bystander deleted: %v", err)
	}
	if _, err := crds.Get(ctx, "ciliumendpoints.cilium.io", metav1.GetOptions{}); err != nil {
		t.Errorf("CRD ciliumendpoints (not installed by the run) deleted: %v", err)
	}
}

// TestKubeconfigTwoModesOnLocal runs relabel-small in two modes in a row
// against one local kube-apiserver with Cilium's reference CRDs, through
// the kubeconfig backend: both modes succeed (the second finds nothing of
// the first in its way), and nothing of the run is left.
func TestKubeconfigTwoModesOnLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run on a real kube-apiserver; -short")
	}
	bin := requireKubeAPIServer(t)
	exe := stampedeBinary(t)
	timeout := 4 * time.Minute
	if os.Getenv("STAMPEDE_TEST_FULL_SIZE") != "" {
		timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	// The kube-apiserver runs in a helper process: Run checks that its
	// own process has no children left after each mode.
	cluster := startDetachedLocal(ctx, t, bin, exe)
	owner := restConfig(cluster, localUsers(scenarios.ModeCRD)[0].Token)
	cs := kubernetes.NewForConfigOrDie(owner)
	dyn := dynamic.NewForConfigOrDie(owner)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crud"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	referenceCRDs(ctx, t, dyn)

	// This server runs no controller manager: a stand-in for the
	// namespace controller finalizes a terminating namespace once it holds
	// no pods and no CiliumEndpoints. Whatever else the run left inside
	// stays in etcd, where the checks below find it.
	nsCtx, nsStop := context.WithCancel(ctx)
	nsDone := make(chan struct{})
	go func() {
		defer close(nsDone)
		finalizeEmptyNamespaces(nsCtx, cs, dyn)
	}()
	defer func() { nsStop(); <-nsDone }()

	const runID = "e2e"
	modes := []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeCES}
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	// relabel-small's shape, cut to 4 nodes and 2 x 2 x 5 = 20 pods so
	// that two modes fit the test's time on a shared machine; the full
	// size (20 nodes, 2,000 pods) with STAMPEDE_TEST_FULL_SIZE=1.
	if os.Getenv("STAMPEDE_TEST_FULL_SIZE") == "" {
		sc.Cluster.Nodes = 4
		sc.Cluster.Namespaces = sc.Cluster.Namespaces[:2]
		sc.Cluster.Workloads.DeploymentsPerNamespace, sc.Cluster.Workloads.Replicas = 2, 5
	}
	start := time.Now()
	kb := NewKubeconfigBackend(KubeconfigConfig{Path: cluster.Kubeconfig, RunID: runID})
	res, err := Run(ctx, Config{
		Scenario: sc, Backend: inspectBeforeStop{kb, func(ctx context.Context) { checkRunObjects(ctx, t, dyn, runID) }, t.Logf},
		Modes: modes, Out: filepath.Join(t.TempDir(), "out"), Executable: exe,
		Progress: testWriter{t}, Grace: 5 * time.Second, AgentNice: AgentNiceAuto,
	})
	if err != nil {
		t.Errorf("run: %v", err)
	}
	if res == nil || len(res.Modes) != len(modes) {
		t.Fatalf("results %+v, want %d modes", res, len(modes))
	}
	for _, m := range res.Modes {
		if m.Status != results.StatusOK {
			t.Errorf("mode %s: %s: %s", m.Mode, m.Status, m.Reason)
			continue
		}
		for _, c := range m.Summary.Convergence {
			if c.Converged != c.Agents || c.Agents != sc.Cluster.Nodes {
				t.Errorf("mode %s: step %d: converged %d/%d, want %d", m.Mode, c.Step, c.Converged, c.Agents, sc.Cluster.Nodes)
			}
		}
	}
	t.Logf("relabel-small (%d nodes, %d pods), %v, kubeconfig backend on a local kube-apiserver: %v", sc.Cluster.Nodes, sc.PodCount(), modes, time.Since(start).Round(time.Second))

	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + runID}
	for _, gvr := range []schema.GroupVersionResource{namespacesGVR, podsGVR, saGVR, nodesGVR, crbGVR, crGVR} {
		if l, err := dyn.Resource(gvr).List(ctx, sel); err != nil || len(l.Items) > 0 {
			t.Errorf("%s labelled with the run after it: %v", gvr.Resource, names(l, err))
		}
	}
	// The cluster had no Cilium objects before the run: none may remain.
	for _, r := range manifests.Resources() {
		if l, err := dyn.Resource(r.GVR).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) > 0 {
			t.Errorf("%s after the run: %v", r.GVR.Resource, names(l, err))
		}
	}
}

func names(l *unstructured.UnstructuredList, err error) any {
	if err != nil {
		return err
	}
	var out []string
	for _, o := range l.Items {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

// finalizeEmptyNamespaces does the namespace controller's last step until
// ctx ends: a terminating namespace without pods and CiliumEndpoints has
// its finalizers removed, and the API server deletes it.
func finalizeEmptyNamespaces(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, ns := range l.Items {
			if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
				continue
			}
			pods, err := cs.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil || len(pods.Items) > 0 {
				continue
			}
			ceps, err := dyn.Resource(gvrOf("ciliumendpoints")).Namespace(ns.Name).List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil || len(ceps.Items) > 0 {
				continue
			}
			ns.Spec.Finalizers = nil
			_, _ = cs.CoreV1().Namespaces().Finalize(ctx, &ns, metav1.UpdateOptions{})
		}
	}
}

// inspectBeforeStop runs inspect at the end of each mode, before the
// backend's clean-up.
type inspectBeforeStop struct {
	Backend
	inspect func(context.Context)
	log     func(format string, args ...any)
}

func (b inspectBeforeStop) Stop(ctx context.Context) error {
	b.inspect(ctx)
	start := time.Now()
	err := b.Backend.Stop(ctx)
	b.log("clean-up took %v (err %v)", time.Since(start).Round(time.Millisecond), err)
	return err
}

// checkRunObjects checks, at the end of a mode, that the objects the
// agents and the control plane wrote are findable by the run's clean-up
// and that the run label is in no identity: CiliumEndpoints carry the run
// label (their pod's labels, as Cilium's endpoint synchroniser copies
// them) and an owner reference to their pod; CiliumEndpointSlices the run
// label; CiliumIdentities hold no stampede.io label.
func checkRunObjects(ctx context.Context, t *testing.T, dyn dynamic.Interface, runID string) {
	ceps, err := dyn.Resource(gvrOf("ciliumendpoints")).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list CiliumEndpoints: %v", err)
		return
	}
	if len(ceps.Items) == 0 {
		t.Errorf("no CiliumEndpoints at the end of a mode")
	}
	for _, o := range ceps.Items {
		owners := o.GetOwnerReferences()
		if o.GetLabels()[RunLabel] != runID || len(owners) != 1 || owners[0].Kind != "Pod" || owners[0].Name != o.GetName() {
			t.Errorf("CiliumEndpoint %s/%s: labels %v, owners %v; want %s=%s and its pod as owner", o.GetNamespace(), o.GetName(), o.GetLabels(), owners, RunLabel, runID)
			break
		}
	}
	slices, err := dyn.Resource(gvrOf("ciliumendpointslices")).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list CiliumEndpointSlices: %v", err)
		return
	}
	for _, o := range slices.Items {
		if o.GetLabels()[RunLabel] != runID {
			t.Errorf("CiliumEndpointSlice %s: labels %v, want %s=%s", o.GetName(), o.GetLabels(), RunLabel, runID)
			break
		}
	}
	ids, err := dyn.Resource(gvrOf("ciliumidentities")).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("list CiliumIdentities: %v", err)
		return
	}
	if len(ids.Items) == 0 {
		t.Errorf("no CiliumIdentities at the end of a mode")
	}
	for _, o := range ids.Items {
		sec, _, _ := unstructured.NestedStringMap(o.Object, "security-labels")
		for k := range sec {
			if strings.Contains(k, "stampede.io") {
				t.Errorf("CiliumIdentity %s has the identity label %s", o.GetName(), k)
				return
			}
		}
		for k := range o.GetLabels() {
			if strings.Contains(k, "stampede.io") {
				t.Errorf("CiliumIdentity %s is labelled %s", o.GetName(), k)
				return
			}
		}
	}
}
