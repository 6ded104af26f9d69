// Package reports renders what a run measured: plots (gonum/plot, PNG
// and SVG), report.md and a self-contained report.html for one run
// (Render, called by `stampede report` and at the end of `stampede run`),
// and capacity.md, capacity.html and the capacity plots for a fitted
// capacity model (RenderCapacity).
//
// The reports tree is four packages under one roof, each with its own
// reason to change:
//
//   - reports/results is the results schema (results.json, SCHEMA.md,
//     schema.json), its incremental Writer, the well-known series names
//     and the catalogue of comparable metrics. It is the contract between
//     the harness, which fills it, and everything else here.
//   - reports (this package) draws and writes documents from results.
//   - reports/gate compares current runs with baseline runs.
//   - reports/capacity sweeps node counts and fits how each cost grows.
//
// reports/internal holds what they share without belonging to any of
// them: number formatting, the format-independent document, atomic file
// writes, two statistics and the tests' fixtures.
//
// Nothing here starts goroutines that outlive a call. The whole tree
// imports only scenarios from this module; results imports nothing else
// of the tree but its internal packages, so the harness depends on the
// schema without depending on rendering.
package reports
