// Package results owns the results schema: what one `stampede run`
// measured, written as results.json. SCHEMA.md documents every field and
// series; schema.json is the same contract as a JSON Schema, embedded and
// enforced by Validate. schema-v1.json, the previous version, stays
// embedded: Decode reads v1 files and upgrades them in memory (each mode
// gets its preset's axes). testdata/results-*.json are example files, kept
// in step with the reports tests' fixture; testdata/v1-relabel-small-run.json
// is a v1 file of a real run.
//
// The schema is versioned (SchemaVersion) and a file is valid at every
// moment of a run: the harness creates a Writer at the start of a run,
// changes the results only through Writer.Update (which rewrites the file
// atomically, at most once per WriterConfig.MinInterval) and calls
// Writer.Flush at the end and on interruption. Validate checks a file
// against the JSON Schema and the rules it cannot express; ReadFile,
// ReadResultsFiles and Decode validate as they read.
//
// Series names the harness writes and the reports read are the Series*
// constants. Metrics is the catalogue of scalars a mode's summary yields,
// which the gate and the capacity model compare; it changes when the
// schema gains a measurement, which is why it lives here.
//
// The only state is a Writer's, guarded by its mutex. The package imports
// only scenarios from this module, besides the reports tree's internal
// packages.
package results
