package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/scenarios"
)

// KindConfig configures the kind backend.
type KindConfig struct {
	// Name is the kind cluster's name (default "stampede-<run ID>").
	Name string
	// NodeImage is the node image (default: kind's default for its
	// version, sigs.k8s.io/kind/pkg/apis/config/defaults.Image).
	NodeImage string
	// Workers is the number of worker nodes besides the control plane
	// (default 0: a single node).
	Workers int
	// Keep keeps the cluster (and the run's objects in it) after Stop.
	Keep bool
	// WaitForReady bounds the wait for the control plane (default 5m).
	WaitForReady time.Duration
	// Log receives the backend's messages (default: BackendEnv.Log).
	Log *slog.Logger
}

// KindBackend creates a kind cluster through sigs.k8s.io/kind's Go API
// (Docker), then runs against it as the kubeconfig backend does (CRDs
// installed, ServiceAccounts with TokenRequest tokens, the mode's RBAC),
// and deletes the cluster at Stop unless Keep. Without Docker, Start
// returns a *SkipError saying so.
type KindBackend struct {
	cfg KindConfig

	mu         sync.Mutex
	provider   *cluster.Provider
	name       string
	kubeconfig string
	inner      *KubeconfigBackend
}

// NewKindBackend returns a kind backend.
func NewKindBackend(cfg KindConfig) *KindBackend {
	if cfg.WaitForReady == 0 {
		cfg.WaitForReady = 5 * time.Minute
	}
	if cfg.NodeImage == "" {
		cfg.NodeImage = defaults.Image
	}
	return &KindBackend{cfg: cfg}
}

// Name implements Backend.
func (b *KindBackend) Name() string { return string(scenarios.BackendKind) }

// kindCluster is the kind configuration the backend creates: one
// control-plane node and cfg.Workers workers, the API server on a random
// loopback port of the host.
func kindCluster(name string, cfg KindConfig) (*v1alpha4.Cluster, error) {
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("kind backend: workers %d is negative", cfg.Workers)
	}
	c := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     name,
		Networking: v1alpha4.Networking{
			IPFamily:         v1alpha4.IPv4Family,
			APIServerAddress: "127.0.0.1",
			APIServerPort:    0, // random
		},
	}
	c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: cfg.NodeImage,
		Labels: map[string]string{RunLabel: name}})
	for i := 0; i < cfg.Workers; i++ {
		c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: cfg.NodeImage,
			Labels: map[string]string{RunLabel: name}})
	}
	return c, nil
}

// KindConfigYAML renders the kind configuration the backend would create.
func KindConfigYAML(name string, cfg KindConfig) ([]byte, error) {
	if cfg.NodeImage == "" {
		cfg.NodeImage = defaults.Image
	}
	c, err := kindCluster(name, cfg)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kind backend: encode config: %w", err)
	}
	return out, nil
}

// dockerAvailable returns nil if the Docker daemon answers, or an error
// saying in one line why not.
func dockerAvailable(ctx context.Context) error {
	path, err := exec.LookPath("docker")
	if err != nil {
		return errors.New("the docker command is not installed")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "info", "--format", "{{.ServerVersion}}")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		line, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
		if line == "" {
			line = err.Error()
		}
		return fmt.Errorf("docker info failed: %s", line)
	}
	return nil
}

// Start implements Backend.
func (b *KindBackend) Start(ctx context.Context, env BackendEnv) (_ *APIServer, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.provider != nil {
		return nil, errors.New("kind backend: already started")
	}
	if err := dockerAvailable(ctx); err != nil {
		return nil, &SkipError{Reason: "kind backend needs Docker, which is not available here: " + err.Error()}
	}
	log := b.cfg.Log
	if log == nil {
		log = env.Log
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if env.Dir == "" {
		return nil, errors.New("kind backend: BackendEnv.Dir is empty")
	}
	name := b.cfg.Name
	if name == "" {
		name = "stampede-" + strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	}
	cfg, err := kindCluster(name, b.cfg)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(env.Dir, "kind.kubeconfig")
	provider := cluster.NewProvider(cluster.ProviderWithDocker())
	log.Info("kind backend: creating cluster", "name", name, "image", b.cfg.NodeImage, "workers", b.cfg.Workers)
	if err := provider.Create(name,
		cluster.CreateWithV1Alpha4Config(cfg),
		cluster.CreateWithKubeconfigPath(kubeconfig),
		cluster.CreateWithWaitForReady(b.cfg.WaitForReady),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	); err != nil {
		return nil, fmt.Errorf("kind backend: create cluster %s: %w", name, err)
	}
	b.provider, b.name, b.kubeconfig = provider, name, kubeconfig
	defer func() {
		if err != nil {
			_ = b.stopLocked(context.WithoutCancel(ctx))
		}
	}()
	b.inner = NewKubeconfigBackend(KubeconfigConfig{Path: kubeconfig, InstallCRDs: true, RunID: name, Log: log})
	api, err := b.inner.Start(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("kind backend: %w", err)
	}
	api.Facts["apiserver"] = "kind"
	api.Facts["kind.cluster"] = name
	api.Facts["kind.image"] = b.cfg.NodeImage
	api.Facts["kind.nodes"] = strconv.Itoa(1 + b.cfg.Workers)
	// The control plane's processes run in the node container, which is a
	// process tree on this host.
	for comp, pid := range kindControlPlanePIDs(ctx, name+"-control-plane") {
		api.Processes[comp] = pid
	}
	return api, nil
}

// Stop implements Backend: it deletes the cluster unless Keep.
func (b *KindBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopLocked(ctx)
}

func (b *KindBackend) stopLocked(ctx context.Context) error {
	if b.provider == nil {
		return nil
	}
	provider, name := b.provider, b.name
	b.provider = nil
	if b.cfg.Keep {
		return nil
	}
	if err := provider.Delete(name, b.kubeconfig); err != nil {
		return fmt.Errorf("kind backend: delete cluster %s: %w", name, err)
	}
	return nil
}

// kindControlPlanePIDs finds kube-apiserver and etcd inside the node
// container (by the container's init PID and /proc); empty if not found.
func kindControlPlanePIDs(ctx context.Context, container string) map[string]int {
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{.State.Pid}}", container).Output()
	if err != nil {
		return nil
	}
	root, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || root <= 0 {
		return nil
	}
	want := map[string]string{"kube-apiserver": "apiserver", "etcd": "etcd"}
	found := map[string]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	comm := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(string(data[closing+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		parent[pid], comm[pid] = ppid, string(data[open+1:closing])
	}
	for pid, c := range comm {
		name, ok := want[c]
		if !ok {
			continue
		}
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == root {
				found[name] = pid
				break
			}
		}
	}
	return found
}
