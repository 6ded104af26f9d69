package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stampede-sim/stampede/scenarios"
)

func newScenariosCmd(_ *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "List, show and validate scenarios",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			for _, name := range scenarios.BuiltinNames() {
				s, err := scenarios.Builtin(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%-14s %5d nodes %6d pods  %s\n", name, s.Cluster.Nodes, s.PodCount(), s.Summary())
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME|FILE",
		Short: "Print the effective scenario (with every default filled in) as YAML",
		Long: `Print the effective scenario as YAML, every default filled in, followed by
a comment block that lists each agent and control-plane knob with where its
value comes from: the scenario, or the default of the Cilium release that
cilium.version names (with the Cilium file, flag or Helm value it was read
from).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.Resolve(args[0])
			if err != nil {
				return err
			}
			out, err := s.YAML()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if _, err := w.Write(out); err != nil {
				return err
			}
			r := s.Release()
			fmt.Fprintf(w, "# Knobs of Cilium %s (defaults read from %s), and where each value comes from:\n", r.Version, r.Read)
			for _, k := range s.Knobs() {
				fmt.Fprintf(w, "#   %s = %s  (%s)\n", k.Path, k.Value, k.Source)
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a scenario file and print every error with its field path",
		Long: `Check a scenario file: strict decoding (unknown fields are errors), then
validation of every field. Prints every error with its field path and exits
with status 1 if there is any.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.Resolve(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d nodes, %d pods, modes %v)\n", args[0], s.Cluster.Nodes, s.PodCount(), s.Modes)
			return nil
		},
	})
	return cmd
}
