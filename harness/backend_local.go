package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stampede-sim/stampede/harness/manifests"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

// KubernetesVersion is the kube-apiserver the local backend runs: the
// k8s.io/kubernetes version pinned in internal/tools/kube-apiserver/go.mod, of the
// same minor as the project's client-go.
const KubernetesVersion = "v1.36.3"

// KubeAPIServerEnv names an environment variable that overrides where the
// kube-apiserver binary is.
const KubeAPIServerEnv = "STAMPEDE_KUBE_APISERVER"

// KubeAPIServerPath is where the kube-apiserver binary of version is
// expected: $STAMPEDE_KUBE_APISERVER if set, else
// <user cache dir>/stampede/kube-apiserver-<version> (the user cache dir is
// $XDG_CACHE_HOME or ~/.cache), which `make tools` fills.
func KubeAPIServerPath(version string) (string, error) {
	if p := os.Getenv(KubeAPIServerEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate kube-apiserver: %w (set %s)", err, KubeAPIServerEnv)
	}
	return filepath.Join(dir, "stampede", "kube-apiserver-"+version), nil
}

// kubeLDFlags stamps the version into the binary as the Kubernetes release
// build does (the same flags as the Makefile's KUBE_LDFLAGS).
func kubeLDFlags(version string) string {
	major, minor := "1", ""
	if parts := strings.Split(strings.TrimPrefix(version, "v"), "."); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	return strings.Join([]string{"-s", "-w",
		"-X", "k8s.io/component-base/version.gitVersion=" + version,
		"-X", "k8s.io/component-base/version.gitMajor=" + major,
		"-X", "k8s.io/component-base/version.gitMinor=" + minor,
		"-X", "k8s.io/component-base/version.gitTreeState=clean",
	}, " ")
}

// findToolsModule looks for internal/tools/kube-apiserver/go.mod upwards from the
// working directory and from the executable's directory.
func findToolsModule() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			cand := filepath.Join(d, "internal", "tools", "kube-apiserver")
			if _, err := os.Stat(filepath.Join(cand, "go.mod")); err == nil {
				return cand, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("internal/tools/kube-apiserver/go.mod not found above the working directory or the executable; run `make tools` in the stampede repository")
}

// EnsureKubeAPIServer returns the kube-apiserver binary of version, building
// it from internal/tools/kube-apiserver with the go command if it is missing
// (several minutes the first time; progress goes to progress).
func EnsureKubeAPIServer(ctx context.Context, version string, progress io.Writer) (string, error) {
	path, err := KubeAPIServerPath(version)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return path, nil
	}
	if os.Getenv(KubeAPIServerEnv) != "" {
		return "", fmt.Errorf("kube-apiserver: %s=%s does not exist", KubeAPIServerEnv, path)
	}
	mod, err := findToolsModule()
	if err != nil {
		return "", fmt.Errorf("kube-apiserver %s is not at %s and cannot be built: %w", version, path, err)
	}
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("build kube-apiserver: %w", err)
	}
	fmt.Fprintf(progress, "building kube-apiserver %s into %s (from %s; takes minutes the first time) ...\n", version, path, mod)
	start := time.Now()
	tmp := path + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", kubeLDFlags(version), "-o", tmp, "k8s.io/kubernetes/cmd/kube-apiserver")
	cmd.Dir = mod
	cmd.Stdout = progress
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build kube-apiserver %s in %s: %w", version, mod, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("build kube-apiserver: %w", err)
	}
	fmt.Fprintf(progress, "built kube-apiserver %s in %s\n", version, time.Since(start).Round(time.Second))
	return path, nil
}

// LocalConfig configures the local backend. Zero values take defaults.
type LocalConfig struct {
	// KubeAPIServer is the binary (default: KubeAPIServerPath, built by
	// EnsureKubeAPIServer on first use).
	KubeAPIServer string
	// Version is the Kubernetes version to run (default KubernetesVersion).
	Version string
	// EtcdUnsafeNoFsync runs etcd without fsync (recorded in Facts).
	EtcdUnsafeNoFsync bool
	// StartTimeout bounds Start (default 3m).
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended to kube-apiserver's command line
	// (for example "--max-requests-inflight=800").
	ExtraAPIServerArgs []string
	// KeepData keeps etcd's data directory after Stop (default: removed;
	// logs, certificates and the kubeconfig are always kept).
	KeepData bool
	// Progress receives build progress when the binary must be built
	// (default os.Stderr).
	Progress io.Writer
	// Log receives the backend's own messages (default: BackendEnv.Log).
	Log *slog.Logger
}

// LocalBackend runs a real kube-apiserver (built from source) with a real
// etcd (`stampede etcd`) as child processes, each in its own process group,
// on loopback ephemeral ports, with RBAC, API Priority and Fairness, static
// token authentication, per-run service-account keys and serving
// certificates, our CRDs installed and the mode's RBAC applied.
type LocalBackend struct {
	cfg LocalConfig

	mu      sync.Mutex
	etcd    *proc.Process
	api     *proc.Process
	dataDir string
	// etcd outlives kube-apiserver when the caller's context ends: it is
	// started under its own context, which the ordering goroutine cancels
	// once kube-apiserver has exited (a kube-apiserver that loses etcd
	// first hangs in its graceful shutdown).
	etcdCancel context.CancelFunc
	stopOrder  chan struct{}
	orderDone  chan struct{}
}

// NewLocalBackend returns a local backend.
func NewLocalBackend(cfg LocalConfig) *LocalBackend {
	if cfg.Version == "" {
		cfg.Version = KubernetesVersion
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stderr
	}
	return &LocalBackend{cfg: cfg}
}

// Name implements Backend.
func (b *LocalBackend) Name() string { return string(scenarios.BackendLocal) }

// Processes returns the running children ("etcd", "apiserver"), for failure
// watching; nil entries when stopped.
func (b *LocalBackend) Processes() map[string]*proc.Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	return map[string]*proc.Process{"etcd": b.etcd, "apiserver": b.api}
}

// Start implements Backend.
func (b *LocalBackend) Start(ctx context.Context, env BackendEnv) (_ *APIServer, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.api != nil || b.etcd != nil {
		return nil, errors.New("local backend: already started")
	}
	log := b.cfg.Log
	if log == nil {
		log = env.Log
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if env.Dir == "" {
		return nil, errors.New("local backend: BackendEnv.Dir is empty")
	}
	if env.Executable == "" {
		return nil, errors.New("local backend: BackendEnv.Executable is empty (needed to run `stampede etcd`)")
	}
	mode, err := env.modeSpec()
	if err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	users, admin, err := checkUsers(mode, env.Users)
	if err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	bin := b.cfg.KubeAPIServer
	if bin == "" {
		if bin, err = EnsureKubeAPIServer(ctx, b.cfg.Version, b.cfg.Progress); err != nil {
			return nil, fmt.Errorf("local backend: %w", err)
		}
	}
	// The children live as long as the caller's context (procCtx); the
	// start-up steps are bounded by StartTimeout (ctx).
	procCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	defer func() {
		if err != nil {
			_ = b.stopLocked(context.WithoutCancel(ctx))
		}
	}()

	pki := filepath.Join(env.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	certs, err := writeLocalPKI(pki)
	if err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	tokens := filepath.Join(env.Dir, "tokens.csv")
	if err := WriteTokenFile(tokens, users); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}

	ea, err := b.startEtcd(ctx, procCtx, env, log)
	if err != nil {
		return nil, err
	}
	etcdClient := ea.Endpoints["client"]

	url, err := b.startAPIServer(ctx, procCtx, env, bin, etcdClient, certs, tokens, admin, log)
	if err != nil {
		return nil, err
	}
	log.Info("local backend: kube-apiserver ready", "url", url)
	b.stopOrder, b.orderDone = make(chan struct{}), make(chan struct{})
	etcdCancel := b.etcdCancel
	go func(api *proc.Process, stop <-chan struct{}, done chan<- struct{}) {
		defer close(done)
		select {
		case <-procCtx.Done():
			<-api.Done() // proc stops it because procCtx ended
			etcdCancel()
		case <-stop:
		}
	}(b.api, b.stopOrder, b.orderDone)

	cfg := &rest.Config{Host: url, BearerToken: admin.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: certs.caFile},
		QPS: 100, Burst: 200, UserAgent: "stampede-harness"}
	version, err := setUpCluster(ctx, cfg, mode)
	if err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	kubeconfig := filepath.Join(env.Dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, url, certs.caFile, admin.Name, admin.Token); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	fsync := ea.Extra["fsync"]
	if fsync == "" {
		fsync = strconv.FormatBool(!b.cfg.EtcdUnsafeNoFsync)
	}
	return &APIServer{
		URL:        url,
		CAFile:     certs.caFile,
		Kubeconfig: kubeconfig,
		Processes:  map[string]int{"apiserver": b.api.PID(), "etcd": b.etcd.PID()},
		MetricsURLs: map[string]string{
			"apiserver": url + "/metrics",
			"etcd":      metricsURL(firstNonEmpty(ea.Endpoints["metrics"], etcdClient)),
		},
		Facts: map[string]string{
			"apiserver":          "kube-apiserver",
			"kubernetes.version": version,
			"etcd.fsync":         fsync,
			"apf":                "enabled",
			"authorization":      "RBAC",
		},
	}, nil
}

// startEtcd starts the backend's etcd (`stampede etcd`) for as long as
// procCtx and waits, within ctx, until it announces its client endpoint.
func (b *LocalBackend) startEtcd(ctx, procCtx context.Context, env BackendEnv, log *slog.Logger) (ready.Announcement, error) {
	b.dataDir = filepath.Join(env.Dir, "etcd")
	etcdReady := filepath.Join(env.Dir, "etcd.ready")
	etcdArgs := []string{"etcd", "--data-dir", b.dataDir, "--ready-file", etcdReady}
	if b.cfg.EtcdUnsafeNoFsync {
		etcdArgs = append(etcdArgs, "--unsafe-no-fsync")
	}
	etcdCtx, etcdCancel := context.WithCancel(context.WithoutCancel(procCtx))
	b.etcdCancel = etcdCancel
	var err error
	b.etcd, err = proc.Start(etcdCtx, proc.Spec{Name: "etcd", Path: env.Executable, Args: etcdArgs,
		LogFile: filepath.Join(env.Dir, "etcd.log"), ReadyFile: etcdReady})
	if err != nil {
		return ready.Announcement{}, fmt.Errorf("local backend: %w", err)
	}
	ea, err := b.etcd.WaitReady(ctx)
	if err != nil {
		return ready.Announcement{}, fmt.Errorf("local backend: etcd: %w\n%s", err, b.etcd.Tail(2048))
	}
	etcdClient := ea.Endpoints["client"]
	if etcdClient == "" {
		return ready.Announcement{}, fmt.Errorf("local backend: etcd announced no \"client\" endpoint (see %s)", b.etcd.LogFile())
	}
	log.Info("local backend: etcd ready", "client", etcdClient, "fsync", ea.Extra["fsync"])
	return ea, nil
}

// startAPIServer starts kube-apiserver on etcdClient for as long as
// procCtx and waits, within ctx, until /readyz answers; it returns the
// server's URL.
func (b *LocalBackend) startAPIServer(ctx, procCtx context.Context, env BackendEnv, bin, etcdClient string, certs localPKI, tokens string, admin User, log *slog.Logger) (string, error) {
	// The port is picked free and then bound by the child, so another
	// process may take it in between: retry a few times.
	var url string
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", fmt.Errorf("local backend: %w", err)
		}
		url = "https://127.0.0.1:" + strconv.Itoa(port)
		args := kubeAPIServerArgs(port, etcdClient, certs, tokens, filepath.Join(env.Dir, "pki"))
		args = append(args, b.cfg.ExtraAPIServerArgs...)
		if err := os.WriteFile(filepath.Join(env.Dir, "kube-apiserver.args"), []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("local backend: %w", err)
		}
		b.api, err = proc.Start(procCtx, proc.Spec{Name: "apiserver", Path: bin, Args: args,
			LogFile: filepath.Join(env.Dir, "kube-apiserver.log"), Grace: 15 * time.Second})
		if err != nil {
			return "", fmt.Errorf("local backend: %w", err)
		}
		err = waitReadyz(ctx, url, certs.caFile, admin.Token, b.api)
		if err == nil {
			break
		}
		tail := b.api.Tail(4096)
		_ = b.api.Stop(context.WithoutCancel(ctx))
		b.api = nil
		if attempt < 3 && strings.Contains(tail, "address already in use") {
			log.Warn("local backend: kube-apiserver port taken, retrying", "port", port)
			continue
		}
		return "", fmt.Errorf("local backend: kube-apiserver: %w\n%s", err, tail)
	}
	return url, nil
}

// Stop implements Backend: it stops kube-apiserver, then etcd (each group
// SIGTERM, then SIGKILL), verifies that no process of either group is left,
// and removes etcd's data unless KeepData.
func (b *LocalBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopLocked(ctx)
}

func (b *LocalBackend) stopLocked(ctx context.Context) error {
	var errs []error
	if b.stopOrder != nil {
		close(b.stopOrder)
		<-b.orderDone
		b.stopOrder, b.orderDone = nil, nil
	}
	if b.api != nil {
		if err := b.api.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		b.api = nil
	}
	if b.etcd != nil {
		if err := b.etcd.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		b.etcd = nil
	}
	if b.etcdCancel != nil {
		b.etcdCancel()
		b.etcdCancel = nil
	}
	if b.dataDir != "" && !b.cfg.KeepData && len(errs) == 0 {
		if err := os.RemoveAll(b.dataDir); err != nil {
			errs = append(errs, err)
		}
		b.dataDir = ""
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local backend: stop: %w", err)
	}
	return nil
}

// checkUsers validates the run's users for mode and returns them with the
// admin (generated if the run has none).
func checkUsers(mode scenarios.ModeSpec, in []User) ([]User, User, error) {
	var admin *User
	seen := map[string]bool{}
	users := make([]User, 0, len(in)+1)
	for i, u := range in {
		if _, err := access.Group(u.Role); err != nil {
			return nil, User{}, fmt.Errorf("users[%d] %q: %w", i, u.Name, err)
		}
		if !access.HasCredentials(mode, u.Role) {
			return nil, User{}, fmt.Errorf("users[%d] %q: role %s has no API server credentials in mode %s", i, u.Name, u.Role, mode.Name)
		}
		if u.Name == "" || u.Token == "" || strings.ContainsAny(u.Token+u.Name, ",\"\n") {
			return nil, User{}, fmt.Errorf("users[%d] %q: name and token must be non-empty and free of commas, quotes and newlines", i, u.Name)
		}
		if seen[u.Token] {
			return nil, User{}, fmt.Errorf("users[%d] %q: duplicate token", i, u.Name)
		}
		seen[u.Token] = true
		users = append(users, u)
		if u.Role == RoleAdmin && admin == nil {
			admin = &users[len(users)-1]
		}
	}
	if admin == nil {
		users = append(users, User{Name: "stampede-admin", Role: RoleAdmin, Token: randomToken()})
		admin = &users[len(users)-1]
	}
	return users, *admin, nil
}

type localPKI struct {
	caFile, certFile, keyFile, saPub, saKey string
}

// writeLocalPKI generates a CA, a serving certificate for 127.0.0.1 signed
// by it, and a service-account signing key pair, all fresh for this run.
func writeLocalPKI(dir string) (localPKI, error) {
	p := localPKI{
		caFile:   filepath.Join(dir, "ca.crt"),
		certFile: filepath.Join(dir, "apiserver.crt"),
		keyFile:  filepath.Join(dir, "apiserver.key"),
		saPub:    filepath.Join(dir, "sa.pub"),
		saKey:    filepath.Join(dir, "sa.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "stampede-local-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("create serving certificate: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate service-account key: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return p, fmt.Errorf("encode serving key: %w", err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return p, fmt.Errorf("encode service-account key: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return p, fmt.Errorf("encode service-account public key: %w", err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{p.caFile, "CERTIFICATE", caDER, 0o644},
		{p.certFile, "CERTIFICATE", der, 0o644},
		{p.keyFile, "EC PRIVATE KEY", keyDER, 0o600},
		{p.saKey, "EC PRIVATE KEY", saDER, 0o600},
		{p.saPub, "PUBLIC KEY", saPubDER, 0o644},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return p, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// kubeAPIServerArgs is kube-apiserver's command line: loopback only, RBAC,
// API Priority and Fairness, static tokens, no anonymous requests.
func kubeAPIServerArgs(port int, etcd string, c localPKI, tokens, certDir string) []string {
	return []string{
		"--etcd-servers=" + etcd,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + c.certFile,
		"--tls-private-key-file=" + c.keyFile,
		"--token-auth-file=" + tokens,
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--enable-priority-and-fairness=true",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.saPub,
		"--service-account-signing-key-file=" + c.saKey,
		// A configuration value for Service ClusterIPs; nothing routes to it.
		"--service-cluster-ip-range=10.96.0.0/16",
		// Pods are objects here: no controller-manager creates the default
		// ServiceAccount that this admission plugin would require.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=true",
		"--v=1",
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReadyz polls url/readyz until it answers 200, the process exits, or
// ctx ends.
func waitReadyz(ctx context.Context, url, caFile, token string, p *proc.Process) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready (%s): %w", last, ctx.Err())
		case <-p.Done():
			return fmt.Errorf("exited before it was ready: %v", p.Err())
		case <-t.C:
		}
	}
}

// setUpCluster installs our CRDs and the mode's RBAC (bound to the token
// file's groups) and returns the server's version. The cluster is the
// run's own, so nothing it creates needs a run label.
func setUpCluster(ctx context.Context, cfg *rest.Config, mode scenarios.ModeSpec) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("server version: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("dynamic client: %w", err)
	}
	crds, err := manifests.CRDs()
	if err != nil {
		return "", err
	}
	if err := manifests.InstallCRDs(ctx, dyn, crds, nil); err != nil {
		return "", err
	}
	if err := applyRBAC(ctx, cs, mode, access.RBACOptions{}); err != nil {
		return "", err
	}
	return v.GitVersion, nil
}

// applyRBAC creates (or replaces) the mode's ClusterRoles and bindings.
func applyRBAC(ctx context.Context, cs kubernetes.Interface, mode scenarios.ModeSpec, opts access.RBACOptions) error {
	crs, crbs, err := access.RBAC(mode, opts)
	if err != nil {
		return err
	}
	for i := range crs {
		cr := &crs[i]
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create ClusterRole %s: %w", cr.Name, err)
			}
			cur, gerr := cs.RbacV1().ClusterRoles().Get(ctx, cr.Name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("get ClusterRole %s: %w", cr.Name, gerr)
			}
			cr.ResourceVersion = cur.ResourceVersion
			if _, err := cs.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update ClusterRole %s: %w", cr.Name, err)
			}
		}
	}
	for i := range crbs {
		crb := &crbs[i]
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create ClusterRoleBinding %s: %w", crb.Name, err)
			}
			cur, gerr := cs.RbacV1().ClusterRoleBindings().Get(ctx, crb.Name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("get ClusterRoleBinding %s: %w", crb.Name, gerr)
			}
			crb.ResourceVersion = cur.ResourceVersion
			if _, err := cs.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update ClusterRoleBinding %s: %w", crb.Name, err)
			}
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for one user with a bearer token.
func writeKubeconfig(path, server, caFile, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stampede"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["stampede"] = &clientcmdapi.Context{Cluster: "stampede", AuthInfo: user}
	cfg.CurrentContext = "stampede"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
