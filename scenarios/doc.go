// Package scenarios owns the scenario format: typed specs loaded from YAML
// with strict decoding, explicit defaults (Cilium's own where a knob mirrors
// one), validation that names the field path of every error, the built-in
// scenarios embedded in the binary, and the deterministic generator that
// turns a scenario and its seed into nodes, namespaces and pods.
//
// Lifecycle: Parse/LoadFile/Builtin return a defaulted, validated *Scenario;
// Generate returns a Topology that the harness mutates as steps run. Nothing
// here starts goroutines or holds resources.
package scenarios
