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
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.Resolve(args[0])
			if err != nil {
				return err
			}
			out, err := s.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
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
