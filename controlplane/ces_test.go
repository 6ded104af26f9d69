package controlplane_test

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stampede-sim/stampede/scenarios"
)

// metricSum adds up the samples of metric whose labels contain every
// given label="value" pair, scraped from a /metrics endpoint.
func metricSum(t *testing.T, addr, metric string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(addr, "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// sliceComposition lists, per slice name, the sorted "name@id" of its
// endpoints.
func (c *cluster) sliceComposition(t *testing.T) map[string][]string {
	t.Helper()
	list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, it := range list.Items {
		eps, _, _ := unstructured.NestedSlice(it.Object, "endpoints")
		var members []string
		for _, e := range eps {
			em := e.(map[string]any)
			members = append(members, fmt.Sprintf("%v@%v", em["name"], em["id"]))
		}
		slices.Sort(members)
		out[it.GetName()] = members
	}
	return out
}

// TestCESSliceModesOnRelabel changes the identity of six endpoints (three
// of identity 256, three of 257) under both slice modes. FCFS (Cilium >=
// 1.18) keeps them in their one slice and only updates it; identity mode
// (Cilium <= 1.17) starts with one slice per identity and moves every
// endpoint to new slices of its new identity, creating and deleting
// slices.
func TestCESSliceModesOnRelabel(t *testing.T) {
	type outcome struct {
		before, after    map[string][]string
		creates, deletes float64
	}
	run := func(t *testing.T, mode string) outcome {
		c := startCluster(t, "relabel-small", false)
		c.sc.ControlPlane.CES.SliceMode = mode
		c.sc.ControlPlane.CES.BatchInterval = scenarios.Duration{Duration: 200 * time.Millisecond}
		c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: time.Hour}
		put := func(shift int64, update bool) {
			for i := 0; i < 6; i++ {
				o := cepObject("ns-0", "p"+strconv.Itoa(i), 256+shift+int64(i/3), "10.0.0."+strconv.Itoa(i+1), "node-0000")
				res := c.dyn.Resource(gvrCEP).Namespace("ns-0")
				var err error
				if update {
					cur, gerr := res.Get(t.Context(), o.GetName(), metav1.GetOptions{})
					if gerr != nil {
						t.Fatal(gerr)
					}
					o.SetResourceVersion(cur.GetResourceVersion())
					_, err = res.Update(t.Context(), o, metav1.UpdateOptions{})
				} else {
					_, err = res.Create(t.Context(), o, metav1.CreateOptions{})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		settled := func(ids ...int64) func() error {
			return func() error {
				n := 0
				for name, m := range c.sliceComposition(t) {
					for _, e := range m {
						id, _ := strconv.ParseInt(e[strings.IndexByte(e, '@')+1:], 10, 64)
						if !slices.Contains(ids, id) {
							return fmt.Errorf("slice %s holds %s", name, e)
						}
						n++
					}
				}
				if n != 6 {
					return fmt.Errorf("%d endpoints in slices, want 6", n)
				}
				return nil
			}
		}
		put(0, false)
		a, stop := runControlplane(t, c, scenarios.ModeCES, "")
		defer stop()
		metrics := a.Endpoints["metrics"]
		eventually(t, time.Minute, "slices hold the endpoints", settled(256, 257))
		var o outcome
		o.before = c.sliceComposition(t)
		created := metricSum(t, metrics, "stampede_ces_writes_total", `verb="create"`)
		deleted := metricSum(t, metrics, "stampede_ces_writes_total", `verb="delete"`)
		put(44, true) // 256 -> 300, 257 -> 301
		eventually(t, time.Minute, "slices follow the relabel", settled(300, 301))
		eventually(t, time.Minute, "empty slices deleted", func() error {
			for name, m := range c.sliceComposition(t) {
				if len(m) == 0 {
					return fmt.Errorf("slice %s is empty", name)
				}
			}
			return nil
		})
		o.after = c.sliceComposition(t)
		o.creates = metricSum(t, metrics, "stampede_ces_writes_total", `verb="create"`) - created
		o.deletes = metricSum(t, metrics, "stampede_ces_writes_total", `verb="delete"`) - deleted
		return o
	}
	fcfs := run(t, scenarios.SliceModeFCFS)
	ident := run(t, scenarios.SliceModeIdentity)

	// FCFS: one mixed slice, the same one after the relabel, only updated.
	if len(fcfs.before) != 1 || len(fcfs.after) != 1 {
		t.Errorf("fcfs: %d slices before and %d after, want 1 and 1: %v -> %v", len(fcfs.before), len(fcfs.after), fcfs.before, fcfs.after)
	}
	for name := range fcfs.before {
		if _, ok := fcfs.after[name]; !ok {
			t.Errorf("fcfs: slice %s replaced by %v; endpoints must stay in their slice", name, fcfs.after)
		}
	}
	if fcfs.creates != 0 || fcfs.deletes != 0 {
		t.Errorf("fcfs relabel: %g creates and %g deletes, want only updates", fcfs.creates, fcfs.deletes)
	}
	// Identity: a slice per identity, all replaced.
	perIdentity := func(comp map[string][]string) error {
		if len(comp) != 2 {
			return fmt.Errorf("%d slices, want one per identity: %v", len(comp), comp)
		}
		for name, m := range comp {
			id := m[0][strings.IndexByte(m[0], '@'):]
			for _, e := range m {
				if !strings.HasSuffix(e, id) {
					return fmt.Errorf("slice %s mixes identities: %v", name, m)
				}
			}
		}
		return nil
	}
	if err := perIdentity(ident.before); err != nil {
		t.Errorf("identity before relabel: %v", err)
	}
	if err := perIdentity(ident.after); err != nil {
		t.Errorf("identity after relabel: %v", err)
	}
	for name := range ident.before {
		if _, ok := ident.after[name]; ok {
			t.Errorf("identity: slice %s survived the relabel; its endpoints must move to slices of their new identity", name)
		}
	}
	if ident.creates < 2 || ident.deletes < 2 {
		t.Errorf("identity relabel: %g creates and %g deletes, want >= 2 of each (a slice per new identity, the old ones emptied)", ident.creates, ident.deletes)
	}
}
