// Package gate is the regression gate: Gate compares current runs with
// baseline runs, mode by mode and metric by metric (results.Metrics is
// the catalogue), with the median of each side, and returns a GateReport
// whose Err is a *RegressionError when the gate fails. Input that cannot
// be compared is a *results.UnusableInputError: among others, runs against
// different API servers (results.APIServer.Comparable: another backend, or
// the fake with another capacity model or none).
//
// Rules come from DefaultGateRules or a YAML file (LoadGateRules,
// ParseGateRules), checked with every problem named by its path.
// examples/ holds a rules file and a CI workflow that runs
// `stampede gate`; a test keeps both loadable.
//
// The package has no state and starts no goroutines. It imports only
// scenarios from this module, besides reports/results and the reports
// tree's internal packages.
package gate
