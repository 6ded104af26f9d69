package reports

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/stampede-sim/stampede/reports/capacity"
	"github.com/stampede-sim/stampede/reports/internal/atomicfile"
	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
)

// CapacityConfig configures RenderCapacity.
type CapacityConfig struct {
	// Dir receives capacity.md, capacity.html and plots/capacity-*.
	Dir     string
	Formats []string
	Log     *slog.Logger
}

// RenderCapacity writes the capacity report and its plots into cfg.Dir.
func RenderCapacity(ctx context.Context, cfg CapacityConfig, rep *capacity.CapacityReport) (*Rendered, error) {
	rc := RenderConfig{Dir: cfg.Dir, Formats: cfg.Formats, Log: cfg.Log}
	if err := rc.defaults(); err != nil {
		return nil, err
	}
	plotDir := filepath.Join(cfg.Dir, "plots")
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	out := &Rendered{}
	pngs := map[string][]byte{}
	var drawn []*Figure
	for _, f := range capacityFigures(rep) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render capacity: %w", err)
		}
		png, err := f.Encode("png")
		if err != nil {
			out.FigureErrors = append(out.FigureErrors, err)
			continue
		}
		pngs[f.Name] = png
		drawn = append(drawn, f)
		if err := out.writeFigure(f, png, rc.Formats, plotDir); err != nil {
			return nil, fmt.Errorf("render capacity: %w", err)
		}
	}
	doc := capacityDocument(rep, drawn)
	out.Markdown = filepath.Join(cfg.Dir, "capacity.md")
	if err := atomicfile.Write(out.Markdown, []byte(doc.Markdown())); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	out.HTML = filepath.Join(cfg.Dir, "capacity.html")
	if err := atomicfile.Write(out.HTML, []byte(doc.HTMLPage(pngs))); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	return out, nil
}

// capacityRanges says which node counts each API server's fits rest on
// (the ×factor columns are relative to each one's largest).
func capacityRanges(rep *capacity.CapacityReport) string {
	var parts []string
	for i, a := range rep.APIServers {
		parts = append(parts, fmt.Sprintf("%s at %s nodes", a.Label(), joinNodes(rep.APINodes[i])))
	}
	return "Fits are made per mode and API server, each from its own runs: " + strings.Join(parts, "; ") + ". The ×factor of a projection is relative to the largest node count measured on its API server."
}

func fmtNodes(n int) string { return format.Int(int64(n)) }

func capacityDocument(rep *capacity.CapacityReport, figs []*Figure) *document.Document {
	d := &document.Document{Title: "Stampede capacity model: " + rep.Scenario}
	var measured []string
	for _, n := range rep.Nodes {
		measured = append(measured, fmtNodes(n))
	}
	maxN := rep.Nodes[len(rep.Nodes)-1]
	var apis []string
	for _, a := range rep.APIServers {
		apis = append(apis, a.String())
	}
	d.P("Measured at %s nodes (%s pods per node) against the %s, on a machine with %d cores and %s memory.",
		strings.Join(measured, ", "), format.Sig3(rep.PodsPerNode), strings.Join(apis, "; the "), rep.Machine.Cores, format.Bytes(float64(rep.Machine.MemoryBytes)))
	d.H(2, "How to read this")
	d.List(
		"Each cost is fitted against the node count n (pods grow with nodes at the ratio above, so the same fit holds for pods). "+
			"The model is a power law a·n^b fitted by least squares in log-log space (b≈1: linear, b≈2: quadratic), "+
			"or a linear model a + b·n when it predicts left-out points clearly better or a value is zero. "+
			"R² and the RMSE of the relative residuals state how well the model fits the measured points.",
		fmt.Sprintf("Range of validity: the fits describe %s to %s nodes. Projections beyond %s nodes are extrapolations: "+
			"they hold only if nothing changes mechanism on the way (a rate limit reached, memory exhausted, a timeout, an API server falling over), "+
			"and their error grows with the distance (the ×factor column). Intervals are 95 %% prediction intervals of the fit; "+
			"they cover the scatter of the measured points, not changes of mechanism.", fmtNodes(rep.Nodes[0]), fmtNodes(maxN), fmtNodes(maxN)),
		"With two node counts a fit is exact and has no error estimate; sweep at least four sizes (e.g. --nodes 25,50,100,200).",
		capacityRanges(rep),
		capacityBreakRules(rep),
	)
	if len(rep.Notes) > 0 {
		d.H(2, "Notes")
		d.List(rep.Notes...)
	}

	capacityVerdicts(d, rep)
	capacityPublished(d, rep)
	capacityBreaks(d, rep)

	d.H(2, "Fits and projections")
	head := []string{"mode", "cost", "measured"}
	head = append(head, "fit", "growth")
	for _, t := range rep.Targets {
		head = append(head, fmtNodes(t)+" nodes")
	}
	byMetric := map[string][]capacity.CapacityFit{}
	var order []string
	for _, f := range rep.Fits {
		if _, ok := byMetric[f.Metric.Name]; !ok {
			order = append(order, f.Metric.Name)
		}
		byMetric[f.Metric.Name] = append(byMetric[f.Metric.Name], f)
	}
	for _, name := range order {
		fits := byMetric[name]
		d.H(3, name+": "+fits[0].Metric.Help)
		var rows [][]string
		for _, f := range fits {
			var meas []string
			for _, p := range f.Points {
				meas = append(meas, fmtNodes(p.Nodes)+": "+f.Metric.Format(p.Value))
			}
			mode := string(f.Mode)
			if len(rep.APIServers) > 1 {
				mode += " (" + f.API.Label() + ")"
			}
			row := []string{mode, f.Metric.Name, strings.Join(meas, "; ")}
			if f.Err != "" {
				row = append(row, "no fit: "+f.Err, format.Missing)
				for range rep.Targets {
					row = append(row, format.Missing)
				}
				rows = append(rows, row)
				continue
			}
			fit := f.Fit.String()
			if f.Alt != nil {
				fit += " (other model: " + f.Alt.String() + ")"
			}
			row = append(row, fit, f.Fit.Growth())
			for _, p := range f.Projections {
				cell := f.Metric.Format(p.Value)
				if !math.IsNaN(p.Lo) {
					cell += " [" + f.Metric.Format(math.Max(p.Lo, 0)) + ", " + f.Metric.Format(p.Hi) + "]"
				}
				cell += fmt.Sprintf(" (×%s)", format.TrimFloat(p.Factor))
				row = append(row, cell)
			}
			rows = append(rows, row)
		}
		d.Table(head, rows)
		for _, fig := range figs {
			if fig.Name == capacityFigureName(name) {
				d.Img(fig.Name, fig.Title)
			}
		}
	}
	return d
}
