package calibrate

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable writes the coefficient table: every coefficient with its
// standard error and unit (microseconds of CPU of kube-apiserver plus
// etcd, a dimensionless factor, or millicores), and the R² of the fit it
// comes from.
func WriteTable(w io.Writer, m *Model) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tcoefficient\tvalue\t± stderr\tunit\tR²\tphases\t")
	for _, r := range m.Table {
		note := ""
		if r.Note != "" {
			note = "  " + r.Note
		}
		scale, unit := 1e6, "µs"
		switch r.Unit {
		case UnitFactor:
			scale, unit = 1, "x"
		case UnitCores:
			scale, unit = 1e3, "millicores"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t± %.2f\t%s\t%.3f\t%d\t%s\n", r.Group, r.Name, scale*r.Coefficient.Value, scale*r.Coefficient.StdErr, unit, r.R2, r.Samples, note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write coefficient table: %w", err)
	}
	return nil
}
