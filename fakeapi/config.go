package fakeapi

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultListen                      = "127.0.0.1:0"
	DefaultMaxRequestsInflight         = 400
	DefaultMaxMutatingRequestsInflight = 200
	DefaultWatchHistory                = 100000
	DefaultWatchBuffer                 = 1000
	DefaultBookmarkInterval            = time.Minute
	DefaultMaxBodyBytes                = 3 << 20
	DefaultWatchTimeout                = 30 * time.Minute
	DefaultWatchBatchWindow            = 50 * time.Millisecond
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Listen is the TCP address to listen on (default 127.0.0.1:0).
	Listen string
	// PlainHTTP serves plain HTTP (HTTP/1.1, and HTTP/2 with prior
	// knowledge) instead of TLS with a self-signed certificate.
	PlainHTTP bool
	// CertDir, if set with TLS, is where the self-signed certificate is
	// written as ca.crt so that other processes can trust it.
	CertDir string
	// StateDir, if set, keeps what outlives the process (wal.go): the
	// objects and resourceVersions, the admin token and the certificate,
	// so that a server started again over it serves the same cluster, as
	// a kube-apiserver restarted over its etcd does.
	StateDir string
	// Tokens are accepted bearer tokens in addition to the admin token the
	// server always generates for RESTConfig.
	Tokens []Token
	// AllowAnonymous lets requests without a bearer token through as
	// user "system:anonymous" (group "system:unauthenticated").
	AllowAnonymous bool
	// Rules authorize requests. Nil means any authenticated user may do
	// anything. Members of group "system:masters" (the admin token) are
	// always allowed.
	Rules []Rule
	// MaxRequestsInflight + MaxMutatingRequestsInflight (defaults 400
	// and 200; negative counts as 0) is the server concurrency limit that
	// API Priority and Fairness shares out among priority levels, as
	// kube-apiserver's is when APF is on. Both negative: no limit, no APF.
	MaxRequestsInflight         int
	MaxMutatingRequestsInflight int
	// WatchHistory is how many events per resource are kept for watch
	// resumption; older resourceVersions get 410 Gone (default 100000).
	// kube-apiserver serves older watches from etcd until its 5-minute
	// compaction, so a re-watch after a short break rarely gets 410; the
	// large default keeps that true here for storms of tens of thousands
	// of writes. Retained events keep old object versions in memory.
	WatchHistory int
	// WatchBuffer is how many events a watcher may fall behind before
	// it is closed and counted in apiserver_terminated_watchers_total
	// (default 1000, at most WatchHistory).
	WatchBuffer int
	// WatchBatchWindow is how long a watcher, once woken by an event,
	// waits for more before writing them in one batch (default 50ms;
	// negative: write every event at once, as kube-apiserver does). It
	// trades tens of milliseconds of watch latency for far fewer writes,
	// wakeups and syscalls per event, on both ends, when many watchers
	// follow a trickle of changes: 1,000 watchers of 200 updates/s cost
	// the server 9.3 us per delivered event with 5ms and 5.2 us with 50ms
	// (BenchmarkWatchFanout with RATE=200).
	WatchBatchWindow time.Duration
	// BookmarkInterval is how often watches that allow bookmarks get one
	// (default 1m).
	BookmarkInterval time.Duration
	// MaxBodyBytes bounds request bodies; larger ones get 413 (default 3 MiB).
	MaxBodyBytes int64
	// Capacity, if set, gives the server the capacity of a kube-apiserver
	// (with its etcd) of Capacity.Cores cores: requests and watch events
	// are charged the profile's costs against that budget (see
	// capacity.go). Nil serves every request as fast as the machine can.
	Capacity *Capacity
	// Registry receives the server's metrics and is served on /metrics.
	// Nil means a new registry of the server's own.
	Registry *prometheus.Registry
	// Logger receives the server's logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Capacity sizes the server's capacity model.
type Capacity struct {
	// Cores is the virtual CPU budget, in cores of the machine Profile was
	// measured on.
	Cores float64
	// Profile holds the cost of each request and watch event.
	Profile *capacity.Profile
}

// Token is one static bearer token and the identity it stands for.
type Token struct {
	Token  string
	User   string
	UID    string
	Groups []string
}

// Rule allows the listed users and groups the listed verbs on the listed
// resources of the listed API groups. "*" matches anything. Resources of a
// subresource are written "pods/status". Verbs are Kubernetes verbs: get,
// list, watch, create, update, patch, delete, deletecollection.
type Rule struct {
	Users     []string `json:"users,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	Verbs     []string `json:"verbs"`
	APIGroups []string `json:"apiGroups"`
	Resources []string `json:"resources"`
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxRequestsInflight == 0 {
		c.MaxRequestsInflight = DefaultMaxRequestsInflight
	}
	if c.MaxMutatingRequestsInflight == 0 {
		c.MaxMutatingRequestsInflight = DefaultMaxMutatingRequestsInflight
	}
	if c.WatchHistory == 0 {
		c.WatchHistory = DefaultWatchHistory
	}
	if c.WatchBuffer == 0 {
		c.WatchBuffer = min(DefaultWatchBuffer, c.WatchHistory)
	}
	if c.WatchBatchWindow == 0 {
		c.WatchBatchWindow = DefaultWatchBatchWindow
	}
	if c.BookmarkInterval == 0 {
		c.BookmarkInterval = DefaultBookmarkInterval
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.WatchHistory < 1 {
		errs = append(errs, fmt.Errorf("watchHistory: must be positive, got %d", c.WatchHistory))
	}
	if c.WatchBuffer < 1 || c.WatchBuffer > c.WatchHistory {
		errs = append(errs, fmt.Errorf("watchBuffer: must be in [1, watchHistory=%d], got %d", c.WatchHistory, c.WatchBuffer))
	}
	if c.BookmarkInterval < 0 {
		errs = append(errs, fmt.Errorf("bookmarkInterval: must not be negative, got %s", c.BookmarkInterval))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("maxBodyBytes: must not be negative, got %d", c.MaxBodyBytes))
	}
	if cp := c.Capacity; cp != nil {
		if math.IsNaN(cp.Cores) || math.IsInf(cp.Cores, 0) || cp.Cores <= 0 {
			errs = append(errs, fmt.Errorf("capacity.cores: must be a positive finite number, got %v", cp.Cores))
		}
		if cp.Profile == nil {
			errs = append(errs, errors.New("capacity.profile: must be set"))
		} else if err := cp.Profile.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("capacity.profile: %w", err))
		}
	}
	seen := map[string]bool{}
	for i, t := range c.Tokens {
		switch {
		case t.Token == "":
			errs = append(errs, fmt.Errorf("tokens[%d]: empty token", i))
		case t.User == "":
			errs = append(errs, fmt.Errorf("tokens[%d]: empty user", i))
		case seen[t.Token]:
			errs = append(errs, fmt.Errorf("tokens[%d]: duplicate token for user %q", i, t.User))
		}
		seen[t.Token] = true
	}
	for i, r := range c.Rules {
		if len(r.Users) == 0 && len(r.Groups) == 0 {
			errs = append(errs, fmt.Errorf("rules[%d]: needs users or groups", i))
		}
		if len(r.Verbs) == 0 {
			errs = append(errs, fmt.Errorf("rules[%d].verbs: empty", i))
		}
		for j, v := range r.Verbs {
			if v != "*" && !knownVerbs[v] {
				errs = append(errs, fmt.Errorf("rules[%d].verbs[%d]: unknown verb %q", i, j, v))
			}
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, fmt.Errorf("rules[%d].apiGroups: empty (use \"\" for core, \"*\" for all)", i))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, fmt.Errorf("rules[%d].resources: empty", i))
		}
	}
	return errors.Join(errs...)
}

var knownVerbs = map[string]bool{
	"get": true, "list": true, "watch": true, "create": true, "update": true,
	"patch": true, "delete": true, "deletecollection": true,
}

// LoadTokenFile reads a kube-apiserver static token file: CSV lines of
// token,user,uid[,"group1,group2"]. Blank lines and lines starting with #
// are skipped.
func LoadTokenFile(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer func() { _ = f.Close() }()
	return parseTokens(f, path)
}

func parseTokens(r io.Reader, name string) ([]Token, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var out []Token
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("token file %s: %w", name, err)
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("token file %s:%d: want token,user,uid[,groups], got %d fields", name, line, len(rec))
		}
		t := Token{Token: strings.TrimSpace(rec[0]), User: strings.TrimSpace(rec[1]), UID: strings.TrimSpace(rec[2])}
		if t.Token == "" || t.User == "" {
			return nil, fmt.Errorf("token file %s:%d: empty token or user", name, line)
		}
		if len(rec) > 3 {
			for _, g := range strings.Split(rec[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					t.Groups = append(t.Groups, g)
				}
			}
		}
		out = append(out, t)
	}
}

// LoadAuthzFile reads a YAML list of Rules. Unknown fields are errors.
func LoadAuthzFile(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authz file: %w", err)
	}
	var rules []Rule
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		return nil, fmt.Errorf("authz file %s: %w", path, err)
	}
	if rules == nil {
		rules = []Rule{}
	}
	return rules, nil
}
