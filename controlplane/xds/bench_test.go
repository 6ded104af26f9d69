package xds_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

// The benchmarks run the control plane in a child process (this test
// binary with benchChildEnv set) so that its CPU time and memory are read
// from /proc apart from the simulated agents'. The child serves the
// scenario named by the variable and obeys lines on stdin: "relabel"
// (apply the scenario's relabel step, answer "relabeled <min new id>
// <changed resources>"), "stats" (answer one JSON line); it exits at EOF.
const benchChildEnv = "STAMPEDE_XDS_BENCH_CHILD"

func runBenchChild(name string) error {
	s, err := scenarios.Builtin(name)
	if err != nil {
		return err
	}
	topo, err := s.Generate()
	if err != nil {
		return err
	}
	m := xds.NewModel(s.Cluster.Name, nil)
	if err := loadTopology(m, s, topo); err != nil {
		return err
	}
	c, err := m.Flush()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	srv, err := xds.New(xds.Config{Registerer: reg})
	if err != nil {
		return err
	}
	if _, err := srv.Apply(c); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	fmt.Printf("addr %s\n", lis.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "relabel":
			minID := uint32(1 << 31)
			for _, st := range s.Steps {
				if st.Relabel == nil {
					continue
				}
				for i := range topo.Namespaces {
					ns := &topo.Namespaces[i]
					for k, v := range st.Relabel.Set {
						ns.Labels[k] = v
					}
					for _, k := range st.Relabel.Remove {
						delete(ns.Labels, k)
					}
					m.SetNamespace(ns.Name, ns.Labels)
				}
				break
			}
			c, err := m.Flush()
			if err != nil {
				return err
			}
			for _, p := range topo.Pods {
				if id, ok := m.IdentityOf(p.Namespace, p.Name); ok && uint32(id) < minID {
					minID = uint32(id)
				}
			}
			n, err := srv.Apply(c)
			if err != nil {
				return err
			}
			fmt.Printf("relabeled %d %d\n", minID, n)
		case "delete-pod":
			p := topo.Pods[0]
			m.DeletePod(p.Namespace, p.Name)
			topo.RemovePod(p)
			c, err := m.Flush()
			if err != nil {
				return err
			}
			n, err := srv.Apply(c)
			if err != nil {
				return err
			}
			fmt.Printf("deleted %d\n", n)
		case "stats":
			mfs, _ := reg.Gather()
			var bytes float64
			for _, mf := range mfs {
				if mf.GetName() == "stampede_xds_response_bytes_total" {
					for _, x := range mf.GetMetric() {
						bytes += x.GetCounter().GetValue()
					}
				}
			}
			out, _ := json.Marshal(struct {
				xds.PushLatency
				ResponseBytes float64 `json:"responseBytes"`
			}{srv.PushLatency(), bytes})
			fmt.Printf("%s\n", out)
		}
	}
	cancel()
	return <-done
}

// child is the control plane process of a benchmark.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
}

func startChild(b *testing.B, scenario string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+scenario)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(outR)}
	c.out.Buffer(make([]byte, 1<<20), 1<<20)
	line := c.line(b)
	addr, ok := strings.CutPrefix(line, "addr ")
	if !ok {
		b.Fatalf("child said %q", line)
	}
	c.addr = addr
	return c
}

func (c *child) line(b *testing.B) string {
	b.Helper()
	if !c.out.Scan() {
		b.Fatalf("child ended: %v", c.out.Err())
	}
	return c.out.Text()
}

func (c *child) say(b *testing.B, s string) string {
	b.Helper()
	if _, err := io.WriteString(c.in, s+"\n"); err != nil {
		b.Fatal(err)
	}
	return c.line(b)
}

func (c *child) stop(b *testing.B) {
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		b.Errorf("child: %v", err)
	}
}

// usage reads the child's CPU seconds (user+system) and its resident
// memory now and at peak, in bytes, from /proc.
func (c *child) usage(b *testing.B) (cpu float64, rss, hwm float64) {
	b.Helper()
	pid := c.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb * 1024
			} else {
				hwm = kb * 1024
			}
		}
	}
	return cpu, rss, hwm
}

// countSink is a light xdsclient.Sink for many agents: it keeps counts and
// the smallest identity it holds.
type countSink struct {
	mu        sync.Mutex
	ids       map[uint32]bool
	hosts     map[uint32]int
	hostTotal int
	eps       map[string]uint32
}

func newCountSink() *countSink {
	return &countSink{ids: map[uint32]bool{}, hosts: map[uint32]int{}, eps: map[string]uint32{}}
}

func (s *countSink) UpsertIdentity(id uint32, _ []string) error {
	s.mu.Lock()
	s.ids[id] = true
	s.mu.Unlock()
	return nil
}
func (s *countSink) DeleteIdentity(id uint32) error {
	s.mu.Lock()
	delete(s.ids, id)
	s.mu.Unlock()
	return nil
}
func (s *countSink) SetIdentityHosts(id uint32, a []netip.Addr) error {
	s.mu.Lock()
	s.hostTotal += len(a) - s.hosts[id]
	s.hosts[id] = len(a)
	s.mu.Unlock()
	return nil
}
func (s *countSink) DeleteIdentityHosts(id uint32) error {
	s.mu.Lock()
	s.hostTotal -= s.hosts[id]
	delete(s.hosts, id)
	s.mu.Unlock()
	return nil
}
func (s *countSink) UpsertPolicy(string, string, []policy.Rule) error { return nil }
func (s *countSink) DeletePolicy(string, string) error                { return nil }
func (s *countSink) SetEndpoint(ep xdsclient.Endpoint) error {
	s.mu.Lock()
	s.eps[ep.Namespace+"/"+ep.Name] = ep.Identity
	s.mu.Unlock()
	return nil
}
func (s *countSink) DeleteEndpoint(ns, name string) error {
	s.mu.Lock()
	delete(s.eps, ns+"/"+name)
	s.mu.Unlock()
	return nil
}
func (s *countSink) Applied(string, string) {}

// synced says whether the sink holds ids identities (all >= minID), hosts
// addresses and eps endpoints (all with identities >= minID).
func (s *countSink) synced(ids, hosts, eps int, minID uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) != ids || s.hostTotal != hosts || len(s.eps) != eps {
		return false
	}
	for id := range s.ids {
		if id < minID {
			return false
		}
	}
	for _, id := range s.eps {
		if id < minID {
			return false
		}
	}
	return true
}

func waitAll(b *testing.B, sinks []*countSink, want func(i int) (int, int, int), minID uint32) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(sinks); {
		ids, hosts, eps := want(i)
		if sinks[i].synced(ids, hosts, eps, minID) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent %d not synced in 10 minutes", i)
		}
		<-tick.C
	}
}

// BenchmarkServeAgents serves the relabel scenario (200 nodes, 20,000
// pods, 250 identities) to 200 and 1,000 delta ADS agents (and 200
// state-of-the-world agents, for comparison), then pushes one
// namespace relabel (250 new identities, every address and endpoint
// moved). Agents beyond 200 reuse node names, as extra agents per node.
// Reported: the control plane's CPU seconds and memory for the initial
// sync and for the relabel push, the relabel's bytes (resource payload
// received by all agents) and seconds until every agent holds the new
// state, and the server's own push latency.
func BenchmarkServeAgents(b *testing.B) {
	s, err := scenarios.Builtin("relabel")
	if err != nil {
		b.Fatal(err)
	}
	topo, err := s.Generate()
	if err != nil {
		b.Fatal(err)
	}
	perNode := make([]int, len(topo.Nodes))
	for _, p := range topo.Pods {
		perNode[p.NodeIndex]++
	}
	for _, tc := range []struct {
		protocol string
		agents   int
	}{{"delta", 200}, {"delta", 1000}, {"sotw", 200}} {
		b.Run(fmt.Sprintf("%s/agents=%d", tc.protocol, tc.agents), func(b *testing.B) {
			for b.Loop() {
				benchServe(b, topo, perNode, tc.agents, tc.protocol == "sotw")
			}
		})
	}
}

func benchServe(b *testing.B, topo *scenarios.Topology, perNode []int, agents int, sotw bool) {
	ch := startChild(b, "relabel")
	defer ch.stop(b)
	ctx, cancel := context.WithCancel(b.Context())
	var wg sync.WaitGroup
	sinks := make([]*countSink, agents)
	clients := make([]*xdsclient.Client, agents)
	var startErr atomic.Value
	for i := range agents {
		sinks[i] = newCountSink()
		c, err := xdsclient.New(xdsclient.Config{Server: ch.addr, Node: topo.Nodes[i%len(topo.Nodes)].Name, Sink: sinks[i], StateOfTheWorld: sotw})
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	cpu0, _, _ := ch.usage(b)
	t0 := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				startErr.Store(err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	ids := 0
	seen := map[string]bool{}
	for _, p := range topo.Pods {
		key := p.Namespace + "/" + p.Deployment
		if !seen[key] {
			seen[key] = true
			ids++
		}
	}
	want := func(i int) (int, int, int) { return ids, len(topo.Pods), perNode[i%len(topo.Nodes)] }
	waitAll(b, sinks, want, 0)
	syncSecs := time.Since(t0).Seconds()
	cpu1, rss1, _ := ch.usage(b)
	var bytes0 uint64
	for _, c := range clients {
		bytes0 += c.Stats().Bytes
	}

	t1 := time.Now()
	reply := ch.say(b, "relabel")
	var minID uint32
	var changed int
	if _, err := fmt.Sscanf(reply, "relabeled %d %d", &minID, &changed); err != nil {
		b.Fatalf("child said %q: %v", reply, err)
	}
	waitAll(b, sinks, want, minID)
	relabelSecs := time.Since(t1).Seconds()
	cpu2, rss2, hwm := ch.usage(b)
	var bytes1 uint64
	for _, c := range clients {
		bytes1 += c.Stats().Bytes
	}
	// One pod deleted: the smallest change (one identity's addresses, one
	// node's endpoint), where delta and state of the world differ most.
	t2 := time.Now()
	if reply := ch.say(b, "delete-pod"); !strings.HasPrefix(reply, "deleted ") {
		b.Fatalf("child said %q", reply)
	}
	gone := topo.Pods[0].NodeIndex
	waitAll(b, sinks, func(i int) (int, int, int) {
		eps := perNode[i%len(topo.Nodes)]
		if i%len(topo.Nodes) == gone {
			eps--
		}
		return ids, len(topo.Pods) - 1, eps
	}, minID)
	onePodSecs := time.Since(t2).Seconds()
	var bytes2 uint64
	for _, c := range clients {
		bytes2 += c.Stats().Bytes
	}
	var st struct {
		xds.PushLatency
		ResponseBytes float64 `json:"responseBytes"`
	}
	// The server records the push once every agent ACKed; ask until it has.
	for {
		if err := json.Unmarshal([]byte(ch.say(b, "stats")), &st); err != nil {
			b.Fatal(err)
		}
		if st.Pending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling another process's state
	}
	if err, _ := startErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(syncSecs, "sync-s")
	b.ReportMetric(cpu1-cpu0, "cp-cpu-sync-s")
	b.ReportMetric(rss1/(1<<20), "cp-rss-sync-MiB")
	b.ReportMetric(relabelSecs, "relabel-s")
	b.ReportMetric(cpu2-cpu1, "cp-cpu-relabel-s")
	b.ReportMetric(rss2/(1<<20), "cp-rss-relabel-MiB")
	b.ReportMetric(hwm/(1<<20), "cp-peak-rss-MiB")
	b.ReportMetric(float64(bytes1-bytes0), "relabel-payload-B")
	b.ReportMetric(float64(bytes1-bytes0)/float64(agents), "relabel-payload-B/agent")
	b.ReportMetric(st.Max, "push-max-s")
	b.ReportMetric(float64(changed), "relabel-resources")
	b.ReportMetric(onePodSecs, "delete-pod-s")
	b.ReportMetric(float64(bytes2-bytes1)/float64(agents), "delete-pod-payload-B/agent")
}
