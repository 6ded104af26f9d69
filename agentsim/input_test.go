package agentsim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestParseAgentTokens(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{
			name: "node rows only",
			in:   "t0,node:node-0000,u0,\"system:nodes\"\nadmin,admin,u1,\"system:masters\"\nt1,node:node-0001,u2\n",
			want: map[string]string{"node-0000": "t0", "node-0001": "t1"},
		},
		{name: "comments and blank", in: "# tokens\n\nt0,node:a,u\n", want: map[string]string{"a": "t0"}},
		{name: "too few fields", in: "t0,node:a\n", wantErr: "line 1: want token,user,uid"},
		{name: "empty token", in: ",node:a,u\n", wantErr: "empty token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAgentTokens(strings.NewReader(tt.in), "tokens.csv")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if m, err := LoadAgentTokens(t.TempDir() + "/absent.csv"); err != nil || m != nil {
		t.Errorf("absent file: %v, %v; want no tokens and no error", m, err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	s := smallScenario(t, scenarios.ModeCRD, true)
	mesh := smallScenario(t, scenarios.ModeMesh, true)
	rc := &rest.Config{Host: "http://127.0.0.1:1"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no scenario", Config{Mode: scenarios.ModeCRD, REST: rc}, "Scenario must be set"},
		{"unknown mode", Config{Scenario: s, Mode: "meshh", REST: rc}, "does not run mode meshh"},
		{"mesh without replicas", Config{Scenario: mesh, Mode: scenarios.ModeMesh, REST: rc}, "needs their etcd URLs (--mesh)"},
		{"mode not in scenario", Config{Scenario: s, Mode: scenarios.ModeKVStore, REST: rc, KVStore: []string{"x"}}, "does not run mode kvstore"},
		{"bad shard", Config{Scenario: s, Mode: scenarios.ModeCRD, REST: rc, Shard: 2, Shards: 2}, "shard 2/2"},
		{"no api", Config{Scenario: s, Mode: scenarios.ModeCRD}, "needs the API server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestUnreachableAPI: agents whose API server does not answer log, retry
// with backoff, report themselves unsynced and stop cleanly.
func TestUnreachableAPI(t *testing.T) {
	s := smallScenario(t, scenarios.ModeCRD, true)
	f, err := New(context.Background(), Config{
		Scenario: s, Mode: scenarios.ModeCRD, REST: &rest.Config{Host: "http://127.0.0.1:1"},
		Shards: 5, Log: testLogger(t),
		NewDatapath: func(ctx context.Context, node string) (datapath.Datapath, error) {
			d, _, err := datapath.Open(ctx, datapath.Config{Kind: datapath.KindMem}, nil)
			return d, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for counterVecSum(t, f.m.watchErrors) < float64(len(f.agents)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling a counter the agents bump
	}
	for _, st := range f.Statuses() {
		if st.Synced {
			t.Errorf("%s reports synced without an API server", st.Node)
		}
	}
	if counterVecSum(t, f.m.watchErrors) == 0 {
		t.Error("no list/watch errors counted")
	}
	cancel()
	<-done
}

func TestDecodeList(t *testing.T) {
	in := `{"kind":"CiliumIdentityList","apiVersion":"cilium.io/v2","metadata":{"resourceVersion":"42"},"items":[` +
		`{"metadata":{"name":"300"},"security-labels":{"k8s:a":"b"}},{"metadata":{"name":"301"},"security-labels":{}}]}`
	lb, err := decodeList[slimCID](strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if lb.Metadata.ResourceVersion != "42" || len(lb.Items) != 2 || lb.Items[0].SecurityLabels["k8s:a"] != "b" || lb.Items[1].Metadata.Name != "301" {
		t.Errorf("got %+v", lb)
	}
	for _, bad := range []string{`[]`, `{"items":{}}`, `{"items":[1]}`, `{"metadata":{}`} {
		if _, err := decodeList[slimCID](strings.NewReader(bad)); err == nil {
			t.Errorf("decodeList(%s): want error", bad)
		}
	}
}
