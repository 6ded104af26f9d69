package capacity

import (
	"fmt"
	"math"

	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/scenarios"
)

// Published is a breaking point seen on a real cluster and published.
type Published struct {
	// Source names where it was published.
	Source string
	// Nodes is the cluster size at which the API server went down.
	Nodes int
	// Mode is the mode the cluster ran in.
	Mode scenarios.Mode
	// What describes the event.
	What string
}

// Issue38030 is the one published breaking point of a relabel we know:
// a namespace label change in a cluster of nearly 3,000 nodes running
// Cilium 1.17 with CRD-backed identities, with about 20,000 pods and 5,000+
// CiliumIdentities in the namespace, produced a burst of CiliumIdentity and
// CiliumEndpoint writes and watch events that crashed the API server. The
// API server's size was not published.
var Issue38030 = Published{
	Source: "cilium/cilium#38030",
	Nodes:  3000,
	Mode:   scenarios.ModeCRD,
	What:   "a namespace relabel at about 3,000 nodes, 20,000 pods and 5,000+ identities in the namespace, crd mode (Cilium 1.17), took down the API server (its size not published)",
}

// Compare says how far v lies from p, or why it cannot be compared.
func (p Published) Compare(v ModeVerdict) string {
	if v.Mode != p.Mode {
		return fmt.Sprintf("not comparable: the published case ran %s mode", p.Mode)
	}
	b := v.Break
	if b.Stated() {
		r := float64(p.Nodes) / b.Nodes
		side := "below"
		if r < 1 {
			r, side = 1/r, "above"
		}
		s := fmt.Sprintf("%s nodes is %s× %s the published %s nodes", format.Int(int64(math.Round(b.Nodes))), format.TrimFloat(r), side, format.Int(int64(p.Nodes)))
		if !math.IsNaN(b.Lo) && b.Lo <= float64(p.Nodes) && float64(p.Nodes) <= b.Hi {
			s += "; the published figure lies within the 95 % interval"
		}
		return s
	}
	return "nothing to compare: " + b.Reason
}
