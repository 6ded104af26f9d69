package harness

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/agentsim"
	"github.com/stampede-sim/stampede/harness/manifests"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/internal/testenv"
	"github.com/stampede-sim/stampede/scenarios"
)

// requireKubeAPIServer returns the built kube-apiserver, or skips (fails
// with STAMPEDE_STRICT_SKIPS=1) when it has not been built.
func requireKubeAPIServer(t testing.TB) string {
	t.Helper()
	path, err := KubeAPIServerPath(KubernetesVersion)
	if err != nil {
		testenv.Skip(t, "locate kube-apiserver: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		testenv.Skip(t, "kube-apiserver %s is not built at %s: run `make tools` (or set %s)", KubernetesVersion, path, KubeAPIServerEnv)
	}
	return path
}

// localUsers are the run's users for tests: admin, operator and two agents.
func localUsers(mode scenarios.Mode) []User {
	users := []User{
		{Name: "stampede-admin", Role: RoleAdmin, Token: "admin-token-0123456789"},
		{Name: "system:serviceaccount:kube-system:cilium-operator", Role: RoleOperator, Token: "operator-token-0123456789"},
	}
	if mode != scenarios.ModeXDS {
		users = append(users,
			User{Name: access.AgentUser("node-1"), Role: RoleAgent, Token: "agent-token-1-0123456789"},
			User{Name: access.AgentUser("node-2"), Role: RoleAgent, Token: "agent-token-2-0123456789"})
	}
	return users
}

func TestLocalBackendRejectsBadUsers(t *testing.T) {
	tests := []struct {
		name  string
		mode  scenarios.Mode
		users []User
		want  string
	}{
		{"agent in xds", scenarios.ModeXDS, localUsers(scenarios.ModeCRD), "role agent has no API server credentials in mode xds"},
		{"unknown role", scenarios.ModeCRD, []User{{Name: "x", Role: "root", Token: "t"}}, `unknown role "root"`},
		{"duplicate token", scenarios.ModeCRD, []User{{Name: "a", Role: RoleAdmin, Token: "t"}, {Name: "b", Role: RoleAgent, Token: "t"}}, "duplicate token"},
		{"comma", scenarios.ModeCRD, []User{{Name: "a,b", Role: RoleAdmin, Token: "t"}}, "free of commas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewLocalBackend(LocalConfig{KubeAPIServer: "/nonexistent/kube-apiserver"})
			_, err := b.Start(t.Context(), BackendEnv{Dir: t.TempDir(), Mode: tt.mode, Users: tt.users, Executable: "/bin/true"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestKubeLDFlags(t *testing.T) {
	got := kubeLDFlags("v1.36.3")
	for _, want := range []string{"version.gitVersion=v1.36.3", "version.gitMajor=1", "version.gitMinor=36"} {
		if !strings.Contains(got, want) {
			t.Errorf("kubeLDFlags = %q, want it to contain %q", got, want)
		}
	}
}

// TestKubernetesVersionPinned checks that the Makefile, the tools module and
// KubernetesVersion agree, and that the tools module is of client-go's minor.
func TestKubernetesVersionPinned(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "KUBE_VERSION := "+KubernetesVersion+"\n") {
		t.Errorf("Makefile's KUBE_VERSION is not %s", KubernetesVersion)
	}
	mod, err := os.ReadFile("../internal/tools/kube-apiserver/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "k8s.io/kubernetes "+KubernetesVersion) {
		t.Errorf("internal/tools/kube-apiserver/go.mod does not require k8s.io/kubernetes %s", KubernetesVersion)
	}
	staging := "v0." + strings.TrimPrefix(KubernetesVersion, "v1.")
	root, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(root), "k8s.io/client-go "+staging) {
		t.Errorf("go.mod's client-go is not %s (the kube-apiserver's staging version)", staging)
	}
}

// TestLocalBackend starts etcd and kube-apiserver for real and checks
// everything the issue asks of them, then stops them and proves that no
// process is left.
func TestLocalBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; -short")
	}
	bin := requireKubeAPIServer(t)
	exe := stampedeBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	if d := os.Getenv("STAMPEDE_TEST_BACKEND_DIR"); d != "" {
		dir = d // keep logs for debugging
	}
	b := NewLocalBackend(LocalConfig{KubeAPIServer: bin, Progress: io.Discard})
	users := localUsers(scenarios.ModeCRD)
	start := time.Now()
	api, err := b.Start(ctx, BackendEnv{Dir: dir, Mode: scenarios.ModeCRD, Users: users, Executable: exe})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = b.Stop(context.WithoutCancel(ctx))
		}
	}()
	t.Logf("local backend up in %v at %s", time.Since(start).Round(time.Millisecond), api.URL)

	admin := restConfig(api, users[0].Token)
	dyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("facts", func(t *testing.T) {
		want := map[string]string{"kubernetes.version": KubernetesVersion, "etcd.fsync": "true", "apf": "enabled", "authorization": "RBAC"}
		for k, v := range want {
			if api.Facts[k] != v {
				t.Errorf("Facts[%s] = %q, want %q", k, api.Facts[k], v)
			}
		}
		for _, name := range []string{"apiserver", "etcd"} {
			if pid := api.Processes[name]; pid <= 0 || syscall.Kill(pid, 0) != nil {
				t.Errorf("Processes[%s] = %d, want a live PID", name, pid)
			}
		}
		if !strings.HasPrefix(api.URL, "https://127.0.0.1:") {
			t.Errorf("URL = %q, want https on loopback", api.URL)
		}
	})

	t.Run("crud-and-watch-every-type", func(t *testing.T) {
		if _, err := kubernetes.NewForConfigOrDie(admin).CoreV1().Namespaces().Create(ctx,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crud"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, r := range manifests.Resources() {
			t.Run(r.GVR.Resource, func(t *testing.T) { crudAndWatch(ctx, t, dyn, r) })
		}
	})

	t.Run("rbac", func(t *testing.T) {
		cs := kubernetes.NewForConfigOrDie(admin)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		agent, err := dynamic.NewForConfig(restConfig(api, users[2].Token))
		if err != nil {
			t.Fatal(err)
		}
		operator, err := dynamic.NewForConfig(restConfig(api, users[1].Token))
		if err != nil {
			t.Fatal(err)
		}
		cid := func(id identity.ID) *unstructured.Unstructured {
			return toUnstructured(t, identity.NewCiliumIdentity(id, identity.Labels{{Source: identity.SourceK8s, Key: "app", Value: "rbac"}}))
		}
		cidGVR := gvrOf("ciliumidentities")
		// crd mode: agents create identities and endpoints, nothing else.
		if _, err := agent.Resource(cidGVR).Create(ctx, cid(70001), metav1.CreateOptions{}); err != nil {
			t.Errorf("crd mode: agent create CiliumIdentity: %v, want allowed", err)
		}
		if _, err := agent.Resource(gvrOf("ciliumendpoints")).Namespace("rbac").Create(ctx, cepObject(t, "rbac", "pod-a", 70001), metav1.CreateOptions{}); err != nil {
			t.Errorf("crd mode: agent create CiliumEndpoint: %v, want allowed", err)
		}
		if _, err := agent.Resource(gvrOf("ciliumendpoints")).Namespace("rbac").Patch(ctx, "pod-a", types.JSONPatchType,
			[]byte(`[{"op":"replace","path":"/status/state","value":"regenerating"}]`), metav1.PatchOptions{}); err != nil {
			t.Errorf("crd mode: agent JSON-patch CiliumEndpoint status: %v, want allowed", err)
		}
		wantForbidden(t, "agent create CiliumEndpointSlice", func() error {
			_, err := agent.Resource(gvrOf("ciliumendpointslices")).Create(ctx, cesObject(t, "ces-rbac", "rbac"), metav1.CreateOptions{})
			return err
		})
		wantForbidden(t, "agent delete CiliumIdentity", func() error {
			return agent.Resource(cidGVR).Delete(ctx, "70001", metav1.DeleteOptions{})
		})
		wantForbidden(t, "agent create Pod", func() error {
			_, err := agent.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace("rbac").Create(ctx,
				&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p"},
					"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "i"}}}}}, metav1.CreateOptions{})
			return err
		})
		wantForbidden(t, "operator create CiliumIdentity in crd mode", func() error {
			_, err := operator.Resource(cidGVR).Create(ctx, cid(70002), metav1.CreateOptions{})
			return err
		})
		if _, err := operator.Resource(gvrOf("ciliumendpointslices")).Create(ctx, cesObject(t, "ces-op", "rbac"), metav1.CreateOptions{}); err != nil {
			t.Errorf("operator create CiliumEndpointSlice: %v, want allowed", err)
		}
		if err := operator.Resource(cidGVR).Delete(ctx, "70001", metav1.DeleteOptions{}); err != nil {
			t.Errorf("operator delete CiliumIdentity (GC): %v, want allowed", err)
		}

		// operator mode: only the operator creates identities.
		op, _ := scenarios.Preset(scenarios.ModeOperator)
		if err := applyRBAC(ctx, cs, op, access.RBACOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRBAC(ctx, t, "operator mode: agent create CiliumIdentity", func() error {
			_, err := agent.Resource(cidGVR).Create(ctx, cid(70003), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		})
		if _, err := operator.Resource(cidGVR).Create(ctx, cid(70004), metav1.CreateOptions{}); err != nil {
			t.Errorf("operator mode: operator create CiliumIdentity: %v, want allowed", err)
		}
		crd, _ := scenarios.Preset(scenarios.ModeCRD)
		if err := applyRBAC(ctx, cs, crd, access.RBACOptions{}); err != nil {
			t.Fatal(err)
		}

		// An unknown token is not authenticated at all.
		stranger, _ := dynamic.NewForConfig(restConfig(api, "no-such-token"))
		_, err = stranger.Resource(cidGVR).List(ctx, metav1.ListOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("unknown token: %v, want 401", err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		client, err := rest.HTTPClientFor(admin)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{
			"apiserver": "apiserver_request_duration_seconds_bucket",
			"etcd":      "grpc_server_handling_seconds_bucket",
		} {
			body := getWithToken(ctx, t, client, api.MetricsURLs[name], users[0].Token)
			if !strings.Contains(body, want) {
				t.Errorf("%s metrics at %s lack %s", name, api.MetricsURLs[name], want)
			}
		}
		body := getWithToken(ctx, t, client, api.MetricsURLs["apiserver"], users[0].Token)
		if !strings.Contains(body, "etcd_request_duration_seconds_bucket") {
			t.Errorf("apiserver metrics lack etcd_request_duration_seconds_bucket")
		}
		if !strings.Contains(body, "apiserver_flowcontrol_") {
			t.Errorf("apiserver metrics lack API Priority and Fairness (apiserver_flowcontrol_*)")
		}
	})

	t.Run("reference-crds-accept-our-objects", func(t *testing.T) { referenceCRDs(ctx, t, dyn) })

	// Clean shutdown: no process of either group is left.
	pids := api.Processes
	stopStart := time.Now()
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("local backend stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	stopped = true
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop: kill(0) = %v", name, pid, err)
		}
		if left := proc.GroupMembers(pid); len(left) > 0 {
			t.Errorf("%s: group %d still has processes %v after Stop", name, pid, left)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etcd data dir still there after Stop: %v", err)
	}
}

// TestLocalBackendContextCancelKillsChildren shows that ending the context
// given to Start (Ctrl-C in `stampede run`) takes the children down.
func TestLocalBackendContextCancelKillsChildren(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; -short")
	}
	bin := requireKubeAPIServer(t)
	exe := stampedeBinary(t)
	ctx, cancel := context.WithCancel(t.Context())
	b := NewLocalBackend(LocalConfig{KubeAPIServer: bin, Progress: io.Discard, EtcdUnsafeNoFsync: true})
	api, err := b.Start(ctx, BackendEnv{Dir: t.TempDir(), Mode: scenarios.ModeXDS, Users: localUsers(scenarios.ModeXDS), Executable: exe})
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	if api.Facts["etcd.fsync"] != "false" {
		t.Errorf("Facts[etcd.fsync] = %q with EtcdUnsafeNoFsync, want false", api.Facts["etcd.fsync"])
	}
	cancel()
	cancelled := time.Now()
	defer func() {
		t.Logf("children gone %v after the context ended", time.Since(cancelled).Round(time.Millisecond))
	}()
	for name, p := range b.Processes() {
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Errorf("%s still running 30s after the context ended", name)
		}
	}
	if err := b.Stop(context.WithoutCancel(ctx)); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for name, pid := range api.Processes {
		if left := proc.GroupMembers(pid); len(left) > 0 {
			t.Errorf("%s: group %d still has processes %v", name, pid, left)
		}
	}
}

func restConfig(api *APIServer, token string) *rest.Config {
	return &rest.Config{Host: api.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: api.CAFile}, QPS: 100, Burst: 100}
}

func gvrOf(resource string) schema.GroupVersionResource {
	for _, r := range manifests.Resources() {
		if r.GVR.Resource == resource {
			return r.GVR
		}
	}
	panic("unknown resource " + resource)
}

func toUnstructured(t testing.TB, v any) *unstructured.Unstructured {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// cepObject is a CiliumEndpoint as agentsim writes it.
func cepObject(t testing.TB, ns, name string, id int64) *unstructured.Unstructured {
	var cep agentsim.CiliumEndpoint
	cep.APIVersion, cep.Kind = "cilium.io/v2", "CiliumEndpoint"
	cep.Metadata.Name, cep.Metadata.Namespace = name, ns
	cep.Status = agentsim.EndpointStatus{
		ID:                  4711,
		Identity:            agentsim.EndpointIdentity{ID: id, Labels: []string{"k8s:app=web", "k8s:io.kubernetes.pod.namespace=" + ns}},
		Networking:          agentsim.EndpointNetworking{Addressing: []agentsim.AddressPair{{IPv4: "10.0.0.7"}}, Node: "192.168.0.1"},
		State:               "ready",
		ExternalIdentifiers: agentsim.ExternalIdentifiers{K8sNamespace: ns, K8sPodName: name, PodName: ns + "/" + name},
	}
	return toUnstructured(t, cep)
}

// cesObject is a CiliumEndpointSlice in the shape controlplane's CES
// controller writes (its types are unexported).
func cesObject(t testing.TB, name, ns string) *unstructured.Unstructured {
	return toUnstructured(t, map[string]any{
		"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice",
		"metadata":  map[string]any{"name": name},
		"namespace": ns,
		"endpoints": []any{map[string]any{
			"name": "pod-a", "id": 70001,
			"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.0.7"}}, "node": "192.168.0.1"},
			"encryption": map[string]any{},
		}},
	})
}

// sampleObject is a representative object of r named name.
func sampleObject(t testing.TB, r manifests.Resource, name, ns string) *unstructured.Unstructured {
	switch r.GVR.Resource {
	case "ciliumidentities":
		return toUnstructured(t, identity.NewCiliumIdentity(identity.ID(name2id(name)), identity.Labels{
			{Source: identity.SourceK8s, Key: "app", Value: "web"},
			{Source: identity.SourceK8s, Key: "io.kubernetes.pod.namespace", Value: ns},
		}))
	case "ciliumendpoints":
		return cepObject(t, ns, name, 70010)
	case "ciliumendpointslices":
		return cesObject(t, name, ns)
	case "ciliumnetworkpolicies":
		return toUnstructured(t, map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{
				"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
				"ingress": []any{map[string]any{
					"fromEndpoints": []any{map[string]any{"matchLabels": map[string]any{"io.cilium.k8s.namespace.labels.team": "a"}}},
					"toPorts":       []any{map[string]any{"ports": []any{map[string]any{"port": "80", "protocol": "TCP"}}}},
				}},
			},
		})
	case "ciliumclusterwidenetworkpolicies":
		return toUnstructured(t, map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}}},
		})
	case "ciliumcidrgroups":
		return toUnstructured(t, map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"externalCIDRs": []any{"192.0.2.0/24"}},
		})
	case "ciliumnodes":
		return toUnstructured(t, map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
			"metadata": map[string]any{"name": name},
			"spec":     map[string]any{"addresses": []any{map[string]any{"type": "InternalIP", "ip": "192.168.0.1"}}},
		})
	}
	t.Fatalf("no sample for %s", r.GVR.Resource)
	return nil
}

func name2id(name string) int {
	id := 80000
	for _, c := range name {
		id = (id*31 + int(c)) % 60000
	}
	return 70000 + id
}

// crudAndWatch creates, reads, updates, patches, lists and deletes one
// object of r while a watch sees every change.
func crudAndWatch(ctx context.Context, t *testing.T, dyn dynamic.Interface, r manifests.Resource) {
	ns := ""
	if r.Namespaced {
		ns = "crud"
	}
	var client dynamic.ResourceInterface = dyn.Resource(r.GVR)
	if ns != "" {
		client = dyn.Resource(r.GVR).Namespace(ns)
	}
	obj := sampleObject(t, r, "obj-"+r.GVR.Resource, ns)
	name := obj.GetName()
	w, err := client.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()

	created, err := client.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := client.Get(ctx, name, metav1.GetOptions{})
	if err != nil || got.GetUID() != created.GetUID() {
		t.Fatalf("get: %v (uid %s, want %s)", err, got.GetUID(), created.GetUID())
	}
	got.SetLabels(map[string]string{"stampede.io/step": "updated"})
	if _, err := client.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := client.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"stampede.io/patched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch: %v", err)
	}
	list, err := client.List(ctx, metav1.ListOptions{LabelSelector: "stampede.io/step=updated"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v, %d items; want 1", err, len(list.Items))
	}
	if err := client.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	want := []watch.EventType{watch.Added, watch.Modified, watch.Modified, watch.Deleted}
	for i, typ := range want {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d events", i)
			}
			if ev.Type != typ {
				t.Fatalf("watch event %d = %s, want %s", i, ev.Type, typ)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("watch event %d (%s) did not come", i, typ)
		}
	}
}

func wantForbidden(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); !apierrors.IsForbidden(err) {
		t.Errorf("%s: %v, want 403 Forbidden", what, err)
	}
}

// waitRBAC waits until f is forbidden: the RBAC authorizer sees role
// changes through its informers, a moment after the write.
func waitRBAC(ctx context.Context, t *testing.T, what string, f func() error) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		err := f()
		if apierrors.IsForbidden(err) {
			return
		}
		select {
		case <-deadline:
			t.Errorf("%s: %v, want 403 Forbidden", what, err)
			return
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-tick.C:
		}
	}
}

func getWithToken(ctx context.Context, t *testing.T, client *http.Client, url, token string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// referenceCRDDir is Cilium's own CRDs, beside the repository.
const referenceCRDDir = "../../shared/reference/cilium-crds"

// referenceCRDs replaces our CRDs with Cilium's reference copies and shows
// that the objects Stampede writes pass their validation (server-side dry
// run), then puts ours back.
func referenceCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface) {
	files, _ := filepath.Glob(filepath.Join(referenceCRDDir, "*.yaml"))
	if len(files) == 0 {
		testenv.Skip(t, "no reference CRDs in %s (shared/ must sit beside the repository)", referenceCRDDir)
	}
	var ref []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifests.ParseCRDs(f, data)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, objs...)
	}
	crdClient := dyn.Resource(manifests.CRDResource)
	for _, c := range ref {
		if err := crdClient.Delete(ctx, c.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete our CRD %s: %v", c.GetName(), err)
		}
	}
	for _, c := range ref {
		waitGone(ctx, t, crdClient, c.GetName())
	}
	if err := manifests.InstallCRDs(ctx, dyn, ref, nil); err != nil {
		t.Fatalf("install reference CRDs: %v", err)
	}
	t.Cleanup(func() {
		ours, err := manifests.CRDs()
		if err == nil {
			err = manifests.InstallCRDs(context.WithoutCancel(ctx), dyn, ours, nil)
		}
		if err != nil {
			t.Errorf("reinstall our CRDs: %v", err)
		}
	})

	byName := map[string]manifests.Resource{}
	for _, r := range manifests.Resources() {
		byName[r.GVR.Resource+"."+r.GVR.Group] = r
	}
	for _, c := range ref {
		r, ok := byName[c.GetName()]
		if !ok {
			t.Errorf("reference CRD %s is not one Stampede uses", c.GetName())
			continue
		}
		t.Run(r.GVR.Resource, func(t *testing.T) {
			ns := ""
			if r.Namespaced {
				ns = "crud"
			}
			obj := sampleObject(t, r, "ref-"+r.GVR.Resource, ns)
			var client dynamic.ResourceInterface = dyn.Resource(r.GVR)
			if ns != "" {
				client = dyn.Resource(r.GVR).Namespace(ns)
			}
			// The server may take a moment to serve a just-established CRD.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			var err error
			for i := 0; i < 100; i++ {
				if _, err = client.Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil || !apierrors.IsNotFound(err) {
					break
				}
				<-tick.C
			}
			if err != nil {
				t.Errorf("dry-run create %s against Cilium's CRD: %v", r.Kind, err)
			}
			// A deliberately wrong object is refused: the dry run validates.
			bad := obj.DeepCopy()
			switch r.GVR.Resource {
			case "ciliumidentities":
				unstructured.RemoveNestedField(bad.Object, "security-labels")
			case "ciliumendpoints":
				_ = unstructured.SetNestedField(bad.Object, "bogus-state", "status", "state")
			case "ciliumendpointslices":
				unstructured.RemoveNestedField(bad.Object, "endpoints")
			}
			if _, err := client.Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsInvalid(err) {
				t.Errorf("dry-run of an invalid %s: %v, want 422 Invalid", r.Kind, err)
			}
		})
	}
}

func waitGone(ctx context.Context, t *testing.T, client dynamic.ResourceInterface, name string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := client.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not deleted: %v", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func TestKubeAPIServerPath(t *testing.T) {
	t.Setenv(KubeAPIServerEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/cache-root")
	got, err := KubeAPIServerPath("v1.36.3")
	if err != nil || got != "/cache-root/stampede/kube-apiserver-v1.36.3" {
		t.Errorf("KubeAPIServerPath = %q, %v; want /cache-root/stampede/kube-apiserver-v1.36.3", got, err)
	}
	t.Setenv(KubeAPIServerEnv, "/elsewhere/kube-apiserver")
	if got, _ := KubeAPIServerPath("v1.36.3"); got != "/elsewhere/kube-apiserver" {
		t.Errorf("with %s set: %q", KubeAPIServerEnv, got)
	}
	// A missing binary named by the variable is an error, not a build.
	_, err = EnsureKubeAPIServer(t.Context(), "v1.36.3", io.Discard)
	if err == nil || !strings.Contains(err.Error(), KubeAPIServerEnv+"=/elsewhere/kube-apiserver does not exist") {
		t.Errorf("EnsureKubeAPIServer error = %v", err)
	}
}
