package calibrate

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable writes the coefficient table: every coefficient in
// microseconds of CPU (kube-apiserver plus etcd) with its standard error,
// and the R² of the fit it comes from.
func WriteTable(w io.Writer, m *Model) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tcoefficient\tvalue (µs)\t± stderr (µs)\tR²\tphases\t")
	for _, r := range m.Table {
		note := ""
		if r.Note != "" {
			note = "  " + r.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t± %.2f\t%.3f\t%d\t%s\n", r.Group, r.Name, 1e6*r.Coefficient.Value, 1e6*r.Coefficient.StdErr, r.R2, r.Samples, note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write coefficient table: %w", err)
	}
	return nil
}
