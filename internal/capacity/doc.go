// Package capacity holds the calibration profile of the fake API server's
// capacity model: what one request and one watch event cost kube-apiserver
// plus etcd in CPU-seconds, fitted by `stampede calibrate` against the
// kube-apiserver this project builds (KubeAPIServerVersion).
//
// A Profile is plain data. Load reads one from a YAML file (strictly:
// unknown or duplicate fields are errors), Builtin returns one of the
// profiles shipped in profiles/ (embedded into the binary), Resolve picks
// between the two ("" is the default shipped profile), Validate checks one
// and names the field that is wrong, and Write writes one as YAML. Load and
// Resolve refuse a profile of another SchemaVersion or measured against
// another kube-apiserver version, because its coefficients would describe a
// different server.
//
// The fake API server (package fakeapi) charges each request
// Requests[verb] and each watch event Watch against a budget of virtual
// cores; the harness/calibrate package produces the profiles.
package capacity
