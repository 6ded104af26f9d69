package harness

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/stampede-sim/stampede/reports/results"
)

// WriteSummaryTable prints one row per mode: status, API latency (peak of
// the per-second p99 and p99 over the mode), kvstore latency, the simulated
// agents' CPU and memory (mean and max across shards; the simulator's cost,
// and the table says so), the peak memory of all processes
// together and of the machine, watch events, writes, duplicate identities
// and time to converge after the last change; then which API server the API
// figures stand for.
func WriteSummaryTable(w io.Writer, r *results.Results) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tstatus\tAPI p99\tAPI peak p99\tkvstore p99\tsim. agent CPU mean/max\tsim. agent RSS mean/max\tpeak mem procs/machine\tevents\twrites\tduplicates\tconverge p50/p99/max")
	for i := range r.Modes {
		m := &r.Modes[i]
		row := []string{string(m.Mode), string(m.Status)}
		s := m.Summary
		if s == nil {
			s = &results.Summary{}
		}
		api, peak := "-", "-"
		for _, l := range s.APILatency {
			if l.Verb == "*" && l.Count > 0 {
				api = secs(l.P99)
			}
		}
		if m.Series != nil {
			if col, ok := m.Series.Values["apiserver.latency.p99"]; ok {
				mx, have := 0.0, false
				for _, v := range col {
					if v == v { // not NaN
						mx, have = max(mx, v), true
					}
				}
				if have {
					peak = secs(mx)
				}
			}
		}
		kv := "-"
		for _, l := range s.KVStoreLatency {
			if kv == "-" || l.Verb == "put" {
				kv = l.Verb + " " + secs(l.P99)
			}
		}
		cpu, rss := "-", "-"
		if a := s.Agents; a != nil {
			cpu = fmt.Sprintf("%.1f%%/%.1f%%", 100*a.MeanCPU.Mean, 100*a.PeakCPU.Max)
			rss = bytesStr(a.MeanRSS.Mean) + "/" + bytesStr(a.PeakRSS.Max)
		}
		mem := "-"
		if mm := s.Memory; mm != nil {
			mem = bytesStr(float64(mm.PeakProcessesRSS)) + "/" + bytesStr(float64(mm.PeakMachineUsed))
		}
		events := "-"
		if s.Watch != nil {
			events = fmt.Sprint(s.Watch.Events)
		}
		writes := "-"
		if s.Writes != nil {
			n, rejected := s.WriteTotals()
			writes = fmt.Sprint(n)
			if rejected > 0 {
				writes += fmt.Sprintf(" (%d rejected)", rejected)
			}
		}
		dups := "-"
		if s.Identities != nil {
			dups = fmt.Sprint(s.Identities.Duplicates)
		}
		conv := "-"
		if n := len(s.Convergence); n > 0 {
			c := s.Convergence[n-1]
			conv = fmt.Sprintf("%s/%s/%s (%d/%d)", secs(c.P50), secs(c.P99), secs(c.Max), c.Converged, c.Agents)
			if c.PolicyOverflow > 0 {
				conv += fmt.Sprintf(" %d overflowing", c.PolicyOverflow)
			}
		}
		row = append(row, api, peak, kv, cpu, rss, mem, events, writes, dups, conv)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		if m.Reason != "" && m.Status != results.StatusOK {
			fmt.Fprintf(tw, "  %s\t%s\n", m.Mode, truncate(m.Reason, 200))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "sim. agent CPU and RSS: the simulator's cost per simulated agent, not a cilium-agent's (the report shows what a cilium-agent would receive and hold)"); err != nil {
		return err
	}
	if r.Run.APIServer == nil && r.Run.Backend.Name == "" {
		return nil
	}
	_, err := fmt.Fprintf(w, "API server: %s\n", results.APIServerOf(r).Describe())
	return err
}

func secs(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%.2fs", v)
	default:
		return fmt.Sprintf("%.1fms", v*1000)
	}
}

func bytesStr(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1fGiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1fMiB", v/(1<<20))
	default:
		return fmt.Sprintf("%.0fKiB", v/(1<<10))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
