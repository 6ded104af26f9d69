// Package capacity is the capacity model: Sweep runs a scenario at several
// node counts through a SweepRunner the command layer supplies (built on
// the harness, which this package does not import), and BuildCapacity
// fits every cost of results.Metrics against the node count (power law or
// linear, with prediction intervals) and projects it to larger clusters
// and to the scenario's SLO limits. reports.RenderCapacity writes the
// result as capacity.md, capacity.html and plots.
//
// Sweep runs one scenario at a time and returns when the last run has
// returned; nothing here outlives a call. The package imports only
// scenarios from this module, besides reports/results and the reports
// tree's internal packages.
package capacity
