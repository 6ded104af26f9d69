// Package reports owns the results schema (results.json), renders plots,
// HTML and Markdown reports, runs the regression gate against a baseline,
// and fits capacity models from node-count sweeps.
//
// Results (results.go, SCHEMA.md, schema.json) is the contract between the
// harness, which fills it, and everything here, which reads it. It is
// versioned (SchemaVersion) and valid at every moment of a run: the
// harness creates a Writer at the start of a run, changes the results only
// through Writer.Update (which rewrites the file atomically, at most once
// per WriterConfig.MinInterval) and calls Writer.Flush at the end and on
// interruption. Validate checks a file against the embedded JSON Schema and
// the rules it cannot express; ReadFile and Decode validate as they read.
//
// Render draws Figures (gonum/plot, PNG and SVG) and writes report.md and a
// self-contained report.html into a directory; `stampede report` and the
// end of `stampede run` call it. Gate compares current runs with baseline
// runs metric by metric (Metrics is the catalogue) and returns a
// GateReport, whose Err is a *RegressionError when the gate fails; input
// that cannot be compared is an *UnusableInputError. Sweep runs a scenario
// at several node counts through a SweepRunner the command layer supplies
// (built on the harness, which this package does not import),
// BuildCapacity fits every cost against the node count and RenderCapacity
// writes capacity.md, capacity.html and the capacity plots.
//
// Nothing here starts goroutines that outlive a call; the only state is a
// Writer's, guarded by its mutex. The package imports only scenarios from
// this module.
package reports
