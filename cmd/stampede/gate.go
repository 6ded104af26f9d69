package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/reports/gate"
	"github.com/stampede-sim/stampede/reports/results"
)

func newGateCmd(g *globals) *cobra.Command {
	var baseline, current []string
	var rulesFile, markdownFile string
	var printRules, listMetrics bool
	cmd := &cobra.Command{
		Use:   "gate --baseline A.json[,B.json...] --current C.json[,D.json...] [--rules FILE]",
		Short: "Compare results with a baseline and fail on regressions",
		Long: `Compare the current results with baseline results, mode by mode and metric
by metric. With several runs on a side the medians are compared, and a metric
whose runs spread too widely is reported as "spread too wide" rather than
judged. A regression is an increase beyond both the relative and the absolute
threshold of the metric's rule; hard limits (rule limits and the scenario's
SLOs) apply regardless of the baseline.

Default rules are built in (--print-rules shows them as a rules file);
--rules FILE adds to them or, with replaceDefaults: true, replaces them.

Exit status: 0 pass, 1 regression or hard limit broken, 2 unusable input
(unreadable or invalid files, different scenarios, partial runs, runs
against different API servers: another backend, or the fake with another
capacity model or none).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if printRules {
				return printDefaultRules(out)
			}
			if listMetrics {
				for _, m := range results.Metrics() {
					fmt.Fprintf(out, "%-22s %-6s %s\n", m.Name, m.Unit, m.Help)
				}
				return nil
			}
			var rules *gate.GateRules
			if rulesFile != "" {
				r, err := gate.LoadGateRules(rulesFile)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				rules = r
			}
			base, err := results.ReadResultsFiles(baseline)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--baseline: %w", err)}
			}
			cur, err := results.ReadResultsFiles(current)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--current: %w", err)}
			}
			rep, err := gate.Gate(base, cur, rules)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			fmt.Fprint(out, rep.Table())
			if markdownFile != "" {
				if err := appendFile(markdownFile, rep.Markdown()); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--markdown: %w", err)}
				}
			}
			if err := rep.Err(); err != nil {
				var re *gate.RegressionError
				if errors.As(err, &re) {
					return &exitError{code: 1, err: fmt.Errorf("gate failed: %d checks failed", len(re.Failures))}
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&baseline, "baseline", nil, "baseline results.json files (comma-separated or repeated)")
	cmd.Flags().StringSliceVar(&current, "current", nil, "current results.json files (comma-separated or repeated)")
	cmd.Flags().StringVar(&rulesFile, "rules", "", "YAML rules file (see --print-rules)")
	cmd.Flags().StringVar(&markdownFile, "markdown", "", "also append the table as Markdown to this file (e.g. $GITHUB_STEP_SUMMARY)")
	cmd.Flags().BoolVar(&printRules, "print-rules", false, "print the built-in rules as a rules file and exit")
	cmd.Flags().BoolVar(&listMetrics, "list-metrics", false, "list the metrics rules can name and exit")
	return cmd
}

func printDefaultRules(w io.Writer) error {
	data, err := yaml.Marshal(gate.GateRules{Rules: gate.DefaultGateRules()})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "# Built-in gate rules. Units are the metric's (stampede gate --list-metrics).")
	fmt.Fprintln(w, "# A rules file adds rules after these; for a mode and metric the last matching rule wins.")
	_, err = w.Write(data)
	return err
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
