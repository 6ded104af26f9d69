package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/reports"
	"github.com/stampede-sim/stampede/reports/results"
)

func newReportCmd(g *globals) *cobra.Command {
	var out string
	var formats []string
	cmd := &cobra.Command{
		Use:   "report RESULTS.json",
		Short: "Render report.md, report.html and plots from a results.json",
		Long: `Render the plots (PNG and SVG), report.md and a self-contained report.html
from a results.json written by 'stampede run' (also from an interrupted run).
Output goes to --out, by default the directory of the results file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			r, err := results.ReadFile(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if out == "" {
				out = filepath.Dir(args[0])
			}
			res, err := reports.Render(cmd.Context(), reports.RenderConfig{Dir: out, Formats: formats, Log: log}, r)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s\nwrote %s\nwrote %d plot files under %s\n", res.Markdown, res.HTML, len(res.Plots), filepath.Join(out, "plots"))
			if len(res.FigureErrors) > 0 {
				var msgs []string
				for _, e := range res.FigureErrors {
					msgs = append(msgs, e.Error())
				}
				return fmt.Errorf("%d figures could not be drawn: %s", len(res.FigureErrors), strings.Join(msgs, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory (default: the directory of RESULTS.json)")
	cmd.Flags().StringSliceVar(&formats, "formats", []string{"png", "svg"}, "plot file formats: png, svg")
	return cmd
}
