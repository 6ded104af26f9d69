package reports

import (
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
)

// TestAgentWorkRendered: the report shows, per mode, what a cilium-agent
// would receive and hold with the summary's numbers; the kernel memory of
// BPF maps when the agents had them and says there are none with mem; and
// labels the simulated agents' CPU and RSS as the simulator's cost.
func TestAgentWorkRendered(t *testing.T) {
	r := fixture.Full(t)
	crd := r.Modes[0].Summary.AgentWork
	kb := results.PerAgent{Sum: 20 * 6 << 20, P50: 6 << 20, P99: 7 << 20, Max: 8 << 20}
	crd.Datapath, crd.KernelMapBytes = "bpf", &kb
	md := buildDocument(r, Figures(r), nil).Markdown()

	var row string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| crd | 20 |") {
			row = line
		}
	}
	if row == "" {
		t.Fatalf("no row for crd in the table of what a cilium-agent would receive and hold:\n%s", md)
	}
	rcv := crd.Received["*"]
	for _, want := range []string{
		perAgentCell(rcv.Events, countCell), perAgentCell(rcv.Bytes, format.Bytes),
		perAgentCell(crd.Cached["*"].Objects, countCell), perAgentCell(crd.Identities, countCell),
		perAgentCell(crd.PolicyMapKeys, countCell), perAgentCell(crd.DatapathUpdates, countCell),
		perAgentCell(kb, format.Bytes),
	} {
		if !strings.Contains(row, want) {
			t.Errorf("crd row lacks %q: %s", want, row)
		}
	}
	if !strings.Contains(md, "| ces | 20 |") || !strings.Contains(md, "none: mem datapath (no kernel maps)") {
		t.Error("the mem datapath's agents are not said to have no kernel maps")
	}
	// Per mode, by resource.
	cep := crd.Received["ciliumendpoints"]
	if !strings.Contains(md, "| ciliumendpoints | "+perAgentCell(cep.Events, countCell)+" | "+perAgentCell(cep.Bytes, format.Bytes)) {
		t.Error("crd's table by resource lacks ciliumendpoints' traffic")
	}
	for _, want := range []string{
		"Per agent: what a cilium-agent would receive and hold",
		"measured from the simulated agents' real traffic",
		"Per agent: the simulator's cost, not a cilium-agent's",
		"simulator's peak CPU per agent, simulator's cost, not a cilium-agent's",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}

	// Every figure of the simulated agents' CPU or memory says it is the
	// simulator's; the work figure is drawn beside it and says what it is.
	var work *Figure
	for _, f := range Figures(r) {
		switch {
		case f.Name == "compare-agent-work":
			work = f
		case strings.HasSuffix(f.Name, "-agents") || f.Name == "compare-resources":
			if !strings.Contains(f.Title, simulatorCost) {
				t.Errorf("%s: title %q does not say it is the %s", f.Name, f.Title, simulatorCost)
			}
		}
	}
	if work == nil {
		t.Fatal("no figure of what a cilium-agent would receive and hold")
	}
	if !strings.Contains(work.Caption, ciliumAgentWork) || !strings.Contains(work.Caption, simulatorCost) {
		t.Errorf("agent work figure caption %q", work.Caption)
	}
	if _, err := work.Encode("png"); err != nil {
		t.Fatal(err)
	}

	// Without work reports there is no such table, not an empty one.
	for i := range r.Modes {
		if s := r.Modes[i].Summary; s != nil {
			s.AgentWork = nil
		}
	}
	d := &document.Document{}
	agentWorkTable(d, r)
	if got := d.Markdown(); strings.Contains(got, ciliumAgentWork) {
		t.Errorf("table without reports:\n%s", got)
	}
}
