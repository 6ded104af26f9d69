package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stampede-sim/stampede/harness/manifests"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// RunLabel is the label every object Stampede creates on a cluster it does
// not own carries; its value is the run's ID.
const RunLabel = identity.RunLabel

// InstallCRDsFlag is the command-line flag that allows the kubeconfig
// backend to install Stampede's CRDs on a cluster that lacks them.
const InstallCRDsFlag = "--install-crds"

// KubeconfigConfig configures the kubeconfig backend.
type KubeconfigConfig struct {
	// Path is the kubeconfig of the existing cluster (required); its
	// current context must be allowed to create namespaces, service
	// accounts, cluster roles and bindings, and tokens.
	Path string
	// Context overrides the kubeconfig's current context.
	Context string
	// InstallCRDs allows installing Stampede's CRDs when the cluster lacks
	// any of them (InstallCRDsFlag). CRDs installed this way carry the run
	// label and are deleted at Stop, with every object of their types.
	InstallCRDs bool
	// RunID identifies the run (default: random); it is the RunLabel value
	// and the suffix of the run's namespace and RBAC object names.
	RunID string
	// TokenTTL is the lifetime of the tokens requested for the run's
	// ServiceAccounts (default 12h).
	TokenTTL time.Duration
	// Log receives the backend's messages (default: BackendEnv.Log).
	Log *slog.Logger
}

// KubeconfigBackend runs against an existing cluster. It creates, all
// labelled RunLabel=<run ID>: the namespace stampede-<run ID> with one
// ServiceAccount per user, the mode's ClusterRoles and bindings for those
// ServiceAccounts (admin is bound to cluster-admin), and, only when
// allowed, the CRDs. Users get tokens from the TokenRequest API (a real
// cluster has no static token file), returned in APIServer.Tokens.
// Stop deletes what the run created and nothing else: the run-labelled
// namespaces with everything in them, the run-labelled cluster-scoped
// objects (cilium.io kinds, Nodes, ClusterRoles, ClusterRoleBindings,
// CRDs), the CiliumNodes of the run's Nodes and the CiliumIdentities of
// pods in the run's namespaces (cleanupLocked).
type KubeconfigBackend struct {
	cfg KubeconfigConfig

	mu      sync.Mutex
	started bool
	rest    *rest.Config
	log     *slog.Logger
	// installedCRDs are the CRDs this run created.
	installedCRDs []string
	runID         string
	// created is about how many objects the run creates (createdObjects),
	// which sizes the clean-up's budget.
	created int
}

// NewKubeconfigBackend returns a backend for the cluster of cfg.Path.
func NewKubeconfigBackend(cfg KubeconfigConfig) *KubeconfigBackend {
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 12 * time.Hour
	}
	return &KubeconfigBackend{cfg: cfg}
}

// Name implements Backend.
func (b *KubeconfigBackend) Name() string { return string(scenarios.BackendKubeconfig) }

// RunID is the run's ID (valid after Start).
func (b *KubeconfigBackend) RunID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runID
}

// Namespace is the run's own namespace (valid after Start).
func (b *KubeconfigBackend) Namespace() string { return "stampede-" + b.RunID() }

var runIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$`)

// Start implements Backend.
func (b *KubeconfigBackend) Start(ctx context.Context, env BackendEnv) (_ *APIServer, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return nil, errors.New("kubeconfig backend: already started")
	}
	if b.cfg.Path == "" {
		return nil, errors.New("kubeconfig backend: no kubeconfig path (kubeconfig=PATH)")
	}
	if env.Dir == "" {
		return nil, errors.New("kubeconfig backend: BackendEnv.Dir is empty")
	}
	if err := b.identify(env); err != nil {
		return nil, err
	}
	b.created = createdObjects(env.Scenario)
	mode, err := env.modeSpec()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	users, _, err := checkUsers(mode, env.Users)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	loading := &clientcmd.ClientConfigLoadingRules{ExplicitPath: b.cfg.Path}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: b.cfg.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: load %s: %w", b.cfg.Path, err)
	}
	rc.QPS, rc.Burst, rc.UserAgent = 50, 100, "stampede-harness"
	b.rest = rc
	b.started = true
	defer func() {
		if err != nil {
			if cerr := b.cleanupLocked(context.WithoutCancel(ctx)); cerr != nil {
				b.log.Warn("kubeconfig backend: clean-up after failed start", "err", cerr)
			}
			b.started = false
		}
	}()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	version, err := cs.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: reach the cluster of %s: %w", b.cfg.Path, err)
	}
	labels := map[string]string{RunLabel: b.runID}

	if err := b.ensureCRDs(ctx, dyn, labels); err != nil {
		return nil, err
	}

	ns := "stampede-" + b.runID
	saOf, err := b.createServiceAccounts(ctx, cs, mode, ns, users, labels)
	if err != nil {
		return nil, err
	}

	tokens, issued, err := b.issueTokens(ctx, cs, ns, users, saOf)
	if err != nil {
		return nil, err
	}
	var admin User
	for _, u := range issued {
		if u.Role == RoleAdmin {
			admin = u
			break
		}
	}

	caFile, err := writeCAFile(rc, filepath.Join(env.Dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	kubeconfig := filepath.Join(env.Dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, rc.Host, caFile, admin.Name, admin.Token); err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	b.log.Info("kubeconfig backend: ready", "server", rc.Host, "run", b.runID, "namespace", ns, "installedCRDs", b.installedCRDs)
	return &APIServer{
		URL:          strings.TrimSuffix(rc.Host, "/"),
		CAFile:       caFile,
		Kubeconfig:   kubeconfig,
		Processes:    map[string]int{},
		MetricsURLs:  map[string]string{"apiserver": strings.TrimSuffix(rc.Host, "/") + "/metrics"},
		Tokens:       tokens,
		ObjectLabels: map[string]string{RunLabel: b.runID},
		Facts: map[string]string{
			"apiserver":          "existing cluster",
			"kubernetes.version": version.GitVersion,
			"etcd.fsync":         "unknown (existing cluster)",
			"apf":                "unknown (existing cluster)",
			"run.label":          RunLabel + "=" + b.runID,
			// What Stop may take to delete what the run creates.
			"cleanup.budget": cleanupBudget(b.created).String(),
		},
	}, nil
}

// identify sets the backend's logger and run ID (generated unless
// configured), which names and labels everything the run creates.
func (b *KubeconfigBackend) identify(env BackendEnv) error {
	b.log = b.cfg.Log
	if b.log == nil {
		b.log = env.Log
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.runID = b.cfg.RunID
	if b.runID == "" {
		var r [4]byte
		if _, err := rand.Read(r[:]); err != nil {
			return fmt.Errorf("kubeconfig backend: run ID: %w", err)
		}
		b.runID = hex.EncodeToString(r[:])
	}
	if !runIDPattern.MatchString(b.runID) {
		return fmt.Errorf("kubeconfig backend: run ID %q: want 1-24 lower-case letters, digits and dashes", b.runID)
	}
	return nil
}

// ensureCRDs installs the Cilium CRDs the cluster lacks, labelled for
// the run, but only with explicit permission (InstallCRDs).
func (b *KubeconfigBackend) ensureCRDs(ctx context.Context, dyn dynamic.Interface, labels map[string]string) error {
	missing, err := manifests.MissingCRDs(ctx, dyn)
	if err != nil {
		return fmt.Errorf("kubeconfig backend: %w", err)
	}
	if len(missing) > 0 {
		if !b.cfg.InstallCRDs {
			return fmt.Errorf("kubeconfig backend: the cluster lacks the CRDs %s; pass %s to let Stampede install them (they are labelled %s=%s and deleted at the end with all their objects)",
				strings.Join(missing, ", "), InstallCRDsFlag, RunLabel, b.runID)
		}
		all, err := manifests.CRDs()
		if err != nil {
			return err
		}
		var install []*unstructured.Unstructured
		for _, c := range all {
			for _, m := range missing {
				if c.GetName() == m {
					install = append(install, c)
				}
			}
		}
		b.installedCRDs = missing
		if err := manifests.InstallCRDs(ctx, dyn, install, labels); err != nil {
			return fmt.Errorf("kubeconfig backend: %w", err)
		}
	}

	return nil
}

// createServiceAccounts creates the run's namespace, one ServiceAccount
// per user and the RBAC of the mode's roles (admin is cluster-admin), and
// returns each user's ServiceAccount name.
func (b *KubeconfigBackend) createServiceAccounts(ctx context.Context, cs kubernetes.Interface, mode scenarios.ModeSpec, ns string, users []User, labels map[string]string) (map[string]string, error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("kubeconfig backend: create namespace %s: %w", ns, err)
	}
	saOf := make(map[string]string, len(users))
	byRole := map[string][]rbacv1.Subject{}
	for _, u := range users {
		sa := serviceAccountName(u)
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("kubeconfig backend: create ServiceAccount %s/%s: %w", ns, sa, err)
		}
		saOf[u.Name] = sa
		byRole[u.Role] = append(byRole[u.Role], rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa})
	}

	// RBAC: the mode's roles for the ServiceAccounts; admin is cluster-admin.
	prefix := "stampede-" + b.runID + ":"
	if err := applyRBAC(ctx, cs, mode, access.RBACOptions{NamePrefix: prefix, Labels: labels,
		Subjects: func(role string) []rbacv1.Subject { return byRole[role] }}); err != nil {
		return nil, fmt.Errorf("kubeconfig backend: %w", err)
	}
	if admins := byRole[RoleAdmin]; len(admins) > 0 {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: prefix + "admin", Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   admins,
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("kubeconfig backend: bind admin: %w", err)
		}
	}

	return saOf, nil
}

// issueTokens requests a token for every user's ServiceAccount
// (TokenRequest, TokenTTL long) and returns them by user name and as
// users.
func (b *KubeconfigBackend) issueTokens(ctx context.Context, cs kubernetes.Interface, ns string, users []User, saOf map[string]string) (map[string]string, []User, error) {
	ttl := int64(b.cfg.TokenTTL / time.Second)
	tokens := make(map[string]string, len(users))
	issued := make([]User, len(users))
	for i, u := range users {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, saOf[u.Name],
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("kubeconfig backend: request a token for %s/%s: %w", ns, saOf[u.Name], err)
		}
		tokens[u.Name] = tr.Status.Token
		issued[i] = User{Name: u.Name, Role: u.Role, Token: tr.Status.Token}
	}
	return tokens, issued, nil
}

// Stop implements Backend: it deletes the run's objects and nothing else
// (cleanupLocked), within a budget of its own (cleanupBudget): the
// caller's deadline, meant for stopping processes, does not cut a slow
// but progressing clean-up short; cancelling the caller's context does.
func (b *KubeconfigBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		return nil
	}
	b.started = false
	return b.cleanupLocked(ctx)
}

// cleanupBudget is how long clean-up may take for a run that created
// objects objects: 30 s, plus 5 ms per object. kube-apiserver deletes a
// collection one object at a time (one etcd transaction each, with
// --delete-collection-workers in parallel), and the namespace controller
// of a real cluster empties a namespace the same way; 5 ms per object
// leaves room for a loaded etcd, and the 30 s for the namespace
// controller's and the CRD finalizer's queues.
func cleanupBudget(objects int) time.Duration {
	return 30*time.Second + time.Duration(objects)*5*time.Millisecond
}

// createdObjects estimates how many objects a run of s creates on the
// cluster: per pod the Pod, its CiliumEndpoint and at most one identity;
// per node the Node, its CiliumNode and the agent's ServiceAccount; per
// namespace the Namespace and its policies; plus a CiliumEndpointSlice
// per 100 pods (the operator's default maximum slice size).
func createdObjects(s *scenarios.Scenario) int {
	if s == nil {
		return 0
	}
	n := 3*s.PodCount() + 3*s.Cluster.Nodes + s.PodCount()/100 + 1
	for range s.Cluster.Namespaces {
		n += 1 + len(s.Policies)
	}
	return n
}

// cleanup kinds.
var (
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	saGVR         = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	nodesGVR      = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	crbGVR        = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}
	crGVR         = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
)

// cleanupLocked deletes what the run created, in few requests whatever
// the run's size:
//
//  1. in each of the run's namespaces (those carrying the run label), one
//     deletecollection per namespaced kind Stampede writes: Pods with a
//     grace period of 0 (simulated pods have no kubelet to confirm their
//     end), ServiceAccounts, ConfigMaps (the probe's), and the namespaced
//     cilium.io kinds;
//  2. the namespaces themselves;
//  3. the CiliumNodes named as the run's Nodes, one deletecollection
//     with the run's label selector per
//     cluster-scoped kind (the cluster-scoped cilium.io kinds, Nodes,
//     ClusterRoleBindings, ClusterRoles), and the CiliumIdentities of
//     pods in the run's namespaces (selected by
//     io.kubernetes.pod.namespace, which Cilium's CRD allocator puts in
//     an identity's metadata.labels; the run label is no identity label);
//  4. delete the CRDs the run installed (the API server deletes their
//     remaining objects) and wait until the run's namespaces are gone;
//  5. count what is left, by kind.
//
// It ends within cleanupBudget of what the run created; objects left are
// reported in one error, by kind and count.
func (b *KubeconfigBackend) cleanupLocked(ctx context.Context) error {
	if b.rest == nil || b.runID == "" {
		return nil
	}
	budget := cleanupBudget(b.created)
	outer := ctx
	ctx, cancel := context.WithTimeout(context.WithoutCancel(outer), budget)
	defer cancel()
	stop := context.AfterFunc(outer, func() {
		if !errors.Is(outer.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()
	start := time.Now()
	// Clean-up makes few requests but one per CiliumNode: a client limit
	// above the run's keeps those within the budget.
	rc := rest.CopyConfig(b.rest)
	rc.QPS, rc.Burst = 200, 200
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubeconfig backend: clean-up: %w", err)
	}
	sel := RunLabel + "=" + b.runID
	var errs []error
	served := func(err error) bool { return !(apierrors.IsNotFound(err) || meta404(err)) }

	nsList, err := dyn.Resource(namespacesGVR).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("kubeconfig backend: clean-up of run %s: list namespaces: %w", b.runID, err)
	}
	var namespaces []string
	for _, n := range nsList.Items {
		namespaces = append(namespaces, n.GetName())
	}

	// 1. Empty the run's namespaces.
	zero := int64(0)
	namespaced := []schema.GroupVersionResource{podsGVR, saGVR, configMapsGVR}
	for _, r := range manifests.Resources() {
		if r.Namespaced {
			namespaced = append(namespaced, r.GVR)
		}
	}
	for _, ns := range namespaces {
		for _, gvr := range namespaced {
			opts := metav1.DeleteOptions{}
			if gvr == podsGVR {
				opts.GracePeriodSeconds = &zero
			}
			if err := dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, opts, metav1.ListOptions{}); err != nil && served(err) {
				errs = append(errs, fmt.Errorf("delete %s in %s: %w", gvr.Resource, ns, err))
			}
		}
		// 2. The namespace.
		if err := dyn.Resource(namespacesGVR).Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns, err))
		}
	}

	// 3. The CiliumNodes of the run's Nodes (an agent names its
	// CiliumNode after its Node and, as Stampede's agents write it, gives
	// it no labels), then the cluster-scoped kinds by label.
	if nodes, err := dyn.Resource(nodesGVR).List(ctx, metav1.ListOptions{LabelSelector: sel}); err != nil {
		errs = append(errs, fmt.Errorf("list nodes: %w", err))
	} else {
		for _, n := range nodes.Items {
			if err := dyn.Resource(ciliumNodesGVR).Delete(ctx, n.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) && served(err) {
				errs = append(errs, fmt.Errorf("delete ciliumnode %s: %w", n.GetName(), err))
				break
			}
		}
	}
	// Cluster-scoped kinds, by label.
	clusterScoped := []schema.GroupVersionResource{nodesGVR, crbGVR, crGVR}
	for _, r := range manifests.Resources() {
		if !r.Namespaced {
			clusterScoped = append(clusterScoped, r.GVR)
		}
	}
	for _, gvr := range clusterScoped {
		if err := dyn.Resource(gvr).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil && served(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", gvr.Resource, err))
		}
	}
	for _, s := range namespaceSelectors(identity.LabelPodNamespace, namespaces) {
		if err := dyn.Resource(ciliumIdentitiesGVR).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: s}); err != nil && served(err) {
			errs = append(errs, fmt.Errorf("delete ciliumidentities of the run's namespaces: %w", err))
		}
	}

	// 4. The CRDs the run installed (the API server's CRD finalizer
	// deletes what is left of their objects), then wait for the
	// namespaces.
	if len(b.installedCRDs) > 0 {
		if err := dyn.Resource(manifests.CRDResource).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
			errs = append(errs, fmt.Errorf("delete CRDs: %w", err))
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for len(namespaces) > 0 {
		l, err := dyn.Resource(namespacesGVR).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil && len(l.Items) == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}

	// 5. What is left.
	left := b.leftovers(context.WithoutCancel(ctx), dyn, sel, namespaced, clusterScoped)
	took := time.Since(start).Round(time.Millisecond)
	if left != "" {
		errs = append([]error{fmt.Errorf("left %s after %v (budget %v for about %d objects)", left, took, budget, b.created)}, errs...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubeconfig backend: clean-up of run %s: %w", b.runID, err)
	}
	b.log.Info("kubeconfig backend: cleaned up", "run", b.runID, "namespaces", len(namespaces), "took", took, "budget", budget)
	return nil
}

var (
	ciliumIdentitiesGVR = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
	ciliumNodesGVR      = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}
)

// namespaceSelectors are label selectors "key in (ns, ...)" for
// namespaces, at most 50 namespaces each (a selector travels in the URL).
func namespaceSelectors(key string, namespaces []string) []string {
	var out []string
	for i := 0; i < len(namespaces); i += 50 {
		j := min(i+50, len(namespaces))
		out = append(out, key+" in ("+strings.Join(namespaces[i:j], ",")+")")
	}
	return out
}

// leftovers counts the run's objects still present, by kind ("3 pods,
// 1 namespaces"; "" if none), in one paginated List per kind.
func (b *KubeconfigBackend) leftovers(ctx context.Context, dyn dynamic.Interface, sel string, namespaced, clusterScoped []schema.GroupVersionResource) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kinds := append([]schema.GroupVersionResource{namespacesGVR}, namespaced...)
	kinds = append(kinds, clusterScoped...)
	if len(b.installedCRDs) > 0 {
		kinds = append(kinds, manifests.CRDResource)
	}
	var parts []string
	for _, gvr := range kinds {
		n, err := countLabelled(ctx, dyn.Resource(gvr), sel)
		switch {
		case err != nil && (apierrors.IsNotFound(err) || meta404(err)):
		case err != nil:
			parts = append(parts, fmt.Sprintf("unknown %s (%v)", gvr.Resource, err))
		case n > 0:
			parts = append(parts, fmt.Sprintf("%d %s", n, gvr.Resource))
		}
	}
	return strings.Join(parts, ", ")
}

// countLabelled counts the objects of c matching sel, in all namespaces.
func countLabelled(ctx context.Context, c dynamic.NamespaceableResourceInterface, sel string) (int, error) {
	n := 0
	opts := metav1.ListOptions{LabelSelector: sel, Limit: 500}
	for {
		l, err := c.List(ctx, opts)
		if err != nil {
			return n, err
		}
		n += len(l.Items)
		if l.GetContinue() == "" {
			return n, nil
		}
		opts.Continue = l.GetContinue()
	}
}

// meta404 reports a "the server could not find the requested resource"
// error of a resource type the server does not serve.
func meta404(err error) bool {
	var se apierrors.APIStatus
	return errors.As(err, &se) && se.Status().Code == 404
}

var saInvalid = regexp.MustCompile(`[^a-z0-9-]+`)

// serviceAccountName makes a DNS-1123 label of a user's name: "admin",
// "operator", "node-<node>".
func serviceAccountName(u User) string {
	n := strings.ToLower(u.Name)
	switch u.Role {
	case RoleAdmin:
		n = "admin"
	case RoleOperator:
		n = "operator"
	}
	n = strings.Trim(saInvalid.ReplaceAllString(n, "-"), "-")
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// writeCAFile returns the file that verifies the server of rc, writing
// inline CA data to path if needed ("" for a system-trusted server).
func writeCAFile(rc *rest.Config, path string) (string, error) {
	if rc.CAFile != "" {
		return rc.CAFile, nil
	}
	if len(rc.CAData) == 0 {
		return "", nil
	}
	if err := os.WriteFile(path, rc.CAData, 0o644); err != nil {
		return "", fmt.Errorf("write CA: %w", err)
	}
	return path, nil
}
