package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/controlplane/mesh"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestMeshSource: the mirrors carry slices when the operator builds them
// and CiliumEndpoints otherwise; other endpoints are refused.
func TestMeshSource(t *testing.T) {
	for _, tc := range []struct {
		e    scenarios.EndpointDistribution
		want mesh.Source
		ok   bool
	}{
		{scenarios.EndpointsCES, mesh.SourceCES, true},
		{scenarios.EndpointsCESSlim, mesh.SourceCES, true},
		{scenarios.EndpointsCEP, mesh.SourceCEP, true},
		{scenarios.EndpointsKVStore, "", false},
		{scenarios.EndpointsXDS, "", false},
	} {
		got, err := meshSource(tc.e)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("meshSource(%s) = %q, %v; want %q (ok %v)", tc.e, got, err, tc.want, tc.ok)
		}
	}
}

// TestRelabelSmallMeshFake runs relabel-small's relabel in ces-slim and
// mesh (testdata/relabel-small-mesh.yaml: Cilium 1.20, 4 nodes, 2 mesh
// replicas) through the harness against the fake API server: both modes
// converge at every step, and the mesh mode measured its replicas' two
// processes each while its agents received identities, the ipcache and
// nodes from them; the mirror-lag probe timed identities in each replica
// (mesh only), and the API server's watch connections were counted in
// both.
func TestRelabelSmallMeshFake(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run; -short")
	}
	bin := stampedeBinary(t)
	requireSubcommands(t, bin, "fakeapi", "etcd", "mesh", "controlplane", "agents")
	sc, err := scenarios.LoadFile(filepath.Join("testdata", "relabel-small-mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	modes := []scenarios.Mode{scenarios.ModeCESSlim, scenarios.ModeMesh}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Scenario: sc, Backend: &FakeBackend{}, Modes: modes, Out: out, Executable: bin,
		Progress: testWriter{t}, Grace: 5 * time.Second, AgentNice: AgentNiceAuto,
	})
	if err != nil {
		t.Errorf("run: %v", err)
	}
	if res == nil {
		t.Fatal("no results")
	}
	if left := liveChildren(); len(left) > 0 {
		t.Errorf("children still running after the run: %v", left)
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := results.Validate(data); err != nil {
		t.Errorf("results.json does not validate: %v", err)
	}
	agents := sc.Cluster.Nodes
	if len(res.Modes) != len(modes) {
		t.Fatalf("%d modes in results, want %d", len(res.Modes), len(modes))
	}
	for _, m := range res.Modes {
		if m.Status != results.StatusOK {
			t.Errorf("mode %s: %s: %s", m.Mode, m.Status, m.Reason)
			continue
		}
		s := m.Summary
		if s == nil || len(s.Convergence) == 0 {
			t.Errorf("mode %s: no convergence summary", m.Mode)
			continue
		}
		for _, c := range s.Convergence {
			if c.Converged != c.Agents || c.Agents != agents {
				t.Errorf("mode %s: step %d: converged %d/%d, want %d/%d", m.Mode, c.Step, c.Converged, c.Agents, agents, agents)
			}
		}
		procs := map[string]bool{}
		for _, p := range s.Processes {
			procs[p.Name] = true
		}
		recv := s.AgentWork
		if recv == nil {
			t.Errorf("mode %s: no agents' work", m.Mode)
			continue
		}
		for _, name := range []string{"mesh-0", "mesh-etcd-0", "mesh-1", "mesh-etcd-1"} {
			if got, want := procs[name], m.Mode == scenarios.ModeMesh; got != want {
				t.Errorf("mode %s: process %s measured: %v, want %v", m.Mode, name, got, want)
			}
		}
		for _, r := range []string{"mesh-identities", "mesh-ipcache", "mesh-nodes"} {
			got := recv.Received[r].Bytes.P50 > 0
			if want := m.Mode == scenarios.ModeMesh; got != want {
				t.Errorf("mode %s: agents received %s: %v, want %v", m.Mode, r, got, want)
			}
		}
		if w := s.Watch; w != nil && w.Connections != nil {
			t.Logf("mode %s: API watch connections peak %d mean %.1f, API server watch events %d", m.Mode, w.Connections.Peak, w.Connections.Mean, w.APIServerEvents)
		}
		if ms := s.Mesh; ms != nil {
			t.Logf("mode %s: mirror lag %+v, served %+v, probe events per agent %d, failovers %d (agent metrics %v)", m.Mode, ms.MirrorLag, ms.Served, ms.ProbeEventsPerAgent, ms.Failovers, ms.AgentMetrics)
		}
		// The API server's watch connections are measured in every mode.
		if w := s.Watch; w == nil || w.Connections == nil || w.Connections.Peak <= 0 || w.Connections.ByResource["pods"] <= 0 {
			t.Errorf("mode %s: API watch connections %+v, want a peak > 0 with Pod watches", m.Mode, s.Watch)
		}
		// The mirror-lag probe timed identities in every replica, on the
		// mesh read path only.
		if m.Mode != scenarios.ModeMesh {
			if s.Mesh != nil {
				t.Errorf("mode %s: summary.mesh %+v without the mesh read path", m.Mode, s.Mesh)
			}
		} else if ms := s.Mesh; ms == nil {
			t.Errorf("mode %s: no summary.mesh", m.Mode)
		} else {
			if ms.Replicas != sc.ControlPlane.Mesh.Replicas || ms.MirrorLag.Count == 0 || len(ms.MirrorLag.PerReplica) != ms.Replicas {
				t.Errorf("mode %s: mesh %d replicas, mirror lag %+v; want %d replicas, probes timed in each", m.Mode, ms.Replicas, ms.MirrorLag, sc.ControlPlane.Mesh.Replicas)
			}
			for _, r := range ms.MirrorLag.PerReplica {
				if r.Count == 0 {
					t.Errorf("mode %s: replica %d: no probe arrived: %+v", m.Mode, r.Replica, r.LagStats)
				}
			}
			if ms.Served.Events <= 0 || ms.Served.Bytes <= 0 || ms.ProbeEventsPerAgent <= 0 {
				t.Errorf("mode %s: served %+v, probe events per agent %d; want both > 0", m.Mode, ms.Served, ms.ProbeEventsPerAgent)
			}
		}
		_, watchedIDs := recv.Received["ciliumidentities"]
		if want := m.Mode != scenarios.ModeMesh; watchedIDs != want {
			t.Errorf("mode %s: agents received ciliumidentities from the API server: %v, want %v", m.Mode, watchedIDs, want)
		}
	}
}
