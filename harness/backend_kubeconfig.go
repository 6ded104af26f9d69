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
	"github.com/stampede-sim/stampede/scenarios"
)

// RunLabel is the label every object Stampede creates on a cluster it does
// not own carries; its value is the run's ID.
const RunLabel = "stampede.io/run"

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
// Stop deletes exactly the objects that carry the run label
// (namespaces, cluster-scoped objects of the cilium.io types, Nodes,
// ClusterRoles, ClusterRoleBindings and CRDs) and nothing else.
type KubeconfigBackend struct {
	cfg KubeconfigConfig

	mu      sync.Mutex
	started bool
	rest    *rest.Config
	log     *slog.Logger
	// installedCRDs are the CRDs this run created.
	installedCRDs []string
	runID         string
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

// Stop implements Backend: it deletes the run's objects (by label) and
// nothing else. Namespaces are deleted asynchronously by the cluster's
// namespace controller.
func (b *KubeconfigBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		return nil
	}
	b.started = false
	return b.cleanupLocked(ctx)
}

// cleanupLocked deletes every object carrying the run label from the
// resources Stampede writes to.
func (b *KubeconfigBackend) cleanupLocked(ctx context.Context) error {
	if b.rest == nil || b.runID == "" {
		return nil
	}
	dyn, err := dynamic.NewForConfig(b.rest)
	if err != nil {
		return fmt.Errorf("kubeconfig backend: clean-up: %w", err)
	}
	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + b.runID}
	var errs []error
	del := func(gvr schema.GroupVersionResource) {
		list, err := dyn.Resource(gvr).List(ctx, sel)
		if apierrors.IsNotFound(err) || meta404(err) {
			return // the resource type is not served
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", gvr.Resource, err))
			return
		}
		for _, item := range list.Items {
			var c dynamic.ResourceInterface = dyn.Resource(gvr)
			if ns := item.GetNamespace(); ns != "" {
				c = dyn.Resource(gvr).Namespace(ns)
			}
			if err := c.Delete(ctx, item.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s %s: %w", gvr.Resource, item.GetName(), err))
			}
		}
	}
	// Objects of the cilium.io types (cluster-wide and in any namespace),
	// then Nodes, Pods and ServiceAccounts, namespaces, RBAC, and last the
	// CRDs this run installed.
	for _, r := range manifests.Resources() {
		del(r.GVR)
	}
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "serviceaccounts"},
		{Version: "v1", Resource: "nodes"},
		{Version: "v1", Resource: "namespaces"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		manifests.CRDResource,
	} {
		del(gvr)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubeconfig backend: clean-up of run %s: %w", b.runID, err)
	}
	b.log.Info("kubeconfig backend: cleaned up", "run", b.runID)
	return nil
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
