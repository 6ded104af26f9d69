package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/scenarios"
)

// FakeBackend runs `stampede fakeapi` (the in-memory API server) as a child
// process, fresh for every mode.
type FakeBackend struct {
	// ExtraArgs are added to the fakeapi command line.
	ExtraArgs []string

	mu sync.Mutex
	p  *proc.Process
}

// Name implements Backend.
func (b *FakeBackend) Name() string { return "fake" }

// CiliumServiceAccount is the user agents authenticate as: Cilium's
// service account in kube-system, as on a real cluster. API Priority and
// Fairness then puts them in the FlowSchema kube-system-service-accounts
// (priority level workload-high, one flow for all agents, since its
// distinguisher is the user), on the fake as on kube-apiserver.
const CiliumServiceAccount = "system:serviceaccount:kube-system:cilium"

// serviceAccountGroups are the groups kube-apiserver gives a kube-system
// service account (k8s.io/apiserver pkg/authentication/serviceaccount
// MakeGroupNames).
const serviceAccountGroups = "system:serviceaccounts,system:serviceaccounts:kube-system"

// WriteTokenFile writes users as a kube-apiserver static token CSV
// (token,user,uid,"groups"), each user in its role's group (internal/access);
// agents (each with its own token) as CiliumServiceAccount with the
// service-account groups besides.
func WriteTokenFile(path string, users []User) error {
	var sb strings.Builder
	for i, u := range users {
		group, err := access.Group(u.Role)
		if err != nil {
			return fmt.Errorf("write token file: user %s: %w", u.Name, err)
		}
		name := u.Name
		if u.Role == RoleAgent {
			name, group = CiliumServiceAccount, serviceAccountGroups+","+group
		}
		fmt.Fprintf(&sb, "%s,%s,%d,\"%s\"\n", u.Token, name, i+1, group)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

// writeAgentTokens writes the token of each agent user for the agent
// shards, in the static token file format with the agent's own user name
// (access.AgentUser, "node:<name>"), which is how agentsim.LoadAgentTokens
// finds a node's token.
func writeAgentTokens(path string, users []User) error {
	var sb strings.Builder
	for i, u := range users {
		if u.Role == RoleAgent {
			fmt.Fprintf(&sb, "%s,%s,%d\n", u.Token, u.Name, i+1)
		}
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("write agent tokens: %w", err)
	}
	return nil
}

// Start implements Backend.
func (b *FakeBackend) Start(ctx context.Context, env BackendEnv) (*APIServer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil {
		return nil, errors.New("fake backend: already started")
	}
	if env.Executable == "" {
		return nil, errors.New("fake backend: no stampede executable")
	}
	tokens := filepath.Join(env.Dir, "tokens.csv")
	if err := WriteTokenFile(tokens, env.Users); err != nil {
		return nil, err
	}
	mode, err := env.modeSpec()
	if err != nil {
		return nil, fmt.Errorf("fake backend: %w", err)
	}
	authz, err := access.AuthzYAML(mode)
	if err != nil {
		return nil, fmt.Errorf("fake backend: %w", err)
	}
	authzFile := filepath.Join(env.Dir, "authz.yaml")
	if err := os.WriteFile(authzFile, authz, 0o644); err != nil {
		return nil, fmt.Errorf("fake backend: write authz table: %w", err)
	}
	kubeconfig := filepath.Join(env.Dir, "kubeconfig")
	readyFile := filepath.Join(env.Dir, "fakeapi.ready")
	args := []string{"fakeapi", "--listen", "127.0.0.1:0", "--tls",
		"--token-auth-file", tokens, "--authz-file", authzFile, "--ready-file", readyFile, "--kubeconfig-out", kubeconfig, "--cert-dir", env.Dir}
	capArgs, capFact, err := capacityArgs(env.Scenario)
	if err != nil {
		return nil, fmt.Errorf("fake backend: %w", err)
	}
	args = append(args, capArgs...)
	args = append(args, b.ExtraArgs...)
	p, err := proc.Start(ctx, proc.Spec{
		Name:      "apiserver",
		Path:      env.Executable,
		Args:      args,
		LogFile:   filepath.Join(env.Dir, "fakeapi.log"),
		ReadyFile: readyFile,
	})
	if err != nil {
		return nil, fmt.Errorf("fake backend: %w", err)
	}
	a, err := p.WaitReady(ctx)
	if err != nil {
		_ = p.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("fake backend: %w", err)
	}
	b.p = p
	api := &APIServer{
		URL:         a.Endpoints["api"],
		CAFile:      a.Extra["ca"],
		Kubeconfig:  kubeconfig,
		Processes:   map[string]int{"apiserver": p.PID()},
		MetricsURLs: map[string]string{},
		Facts:       map[string]string{"apiserver": "stampede fakeapi", "apf": "kube-apiserver's (k8s.io/apiserver v0.36), bootstrap configuration; agents in kube-system-service-accounts/workload-high", "capacity": capFact},
	}
	if m := a.Endpoints["metrics"]; m != "" {
		api.MetricsURLs["apiserver"] = metricsURL(m)
	} else {
		api.MetricsURLs["apiserver"] = strings.TrimSuffix(api.URL, "/") + "/metrics"
	}
	if api.URL == "" {
		_ = b.stopLocked(ctx)
		return nil, fmt.Errorf("fake backend: announcement has no \"api\" endpoint (see %s)", p.LogFile())
	}
	return api, nil
}

// Stop implements Backend.
func (b *FakeBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopLocked(ctx)
}

func (b *FakeBackend) stopLocked(ctx context.Context) error {
	if b.p == nil {
		return nil
	}
	p := b.p
	b.p = nil
	if err := p.Stop(ctx); err != nil {
		return fmt.Errorf("fake backend: %w", err)
	}
	return nil
}

// Process returns the running fakeapi (nil when stopped), for failure
// watching.
func (b *FakeBackend) Process() *proc.Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.p
}

// capacityArgs turns the scenario's api.capacity into fakeapi flags and a
// fact for the report; no capacity is no flags (no model). A profile that
// is a file is passed as an absolute path, since the child may resolve it
// from another directory.
func capacityArgs(s *scenarios.Scenario) ([]string, string, error) {
	if s == nil || s.API.Capacity == nil {
		return nil, "none (no capacity model)", nil
	}
	c := s.API.Capacity
	profile := c.Profile
	if _, err := os.Stat(profile); err == nil && !slices.Contains(capacity.Builtins(), profile) {
		abs, err := filepath.Abs(profile)
		if err != nil {
			return nil, "", fmt.Errorf("api.capacity.profile: %w", err)
		}
		profile = abs
	}
	p, err := capacity.Resolve(profile)
	if err != nil {
		return nil, "", fmt.Errorf("api.capacity.profile: %w", err)
	}
	cores := strconv.FormatFloat(c.Cores, 'g', -1, 64)
	fact := fmt.Sprintf("%s cores of %s (%d-core %s), profile %s", cores, p.Machine.CPUModel, p.Machine.Cores, p.Machine.Kernel, p.Name)
	return []string{"--capacity-cores", cores, "--capacity-profile", profile}, fact, nil
}
