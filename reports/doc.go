// Package reports owns the results schema (results.json), renders plots,
// HTML and Markdown reports, runs the regression gate against a baseline,
// and fits capacity models from node-count sweeps.
package reports
