// Package capacity is the capacity model: Sweep runs a scenario at several
// node counts, and at several API server sizes (the fake API server's
// capacity model, api.capacity.cores), through a SweepRunner the command
// layer supplies (built on the harness, which this package does not
// import). BuildCapacity fits every cost of results.Metrics against the
// node count, per mode and API server (power law or linear, with
// prediction intervals), projects it to larger clusters and judges where
// each mode breaks an SLO. reports.RenderCapacity writes the result as
// capacity.md, capacity.html and plots.
//
// A breaking point is stated only when the data supports it: from runs
// against a server whose latency is a kube-apiserver's (a real one, or the
// fake with a capacity model; never the fake without one, whose latency is
// the simulator's), for modes whose agents talk to the API server (not
// xds), and within Options.MaxExtrapolation times the largest measured
// node count, with its 95 % interval. Otherwise BreakingPoint says why and
// which runs would settle it.
//
// Sweep runs one scenario at a time and returns when the last run has
// returned; nothing here outlives a call. The package imports only
// scenarios from this module, besides reports/results and the reports
// tree's internal packages.
package capacity
