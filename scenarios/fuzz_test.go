package scenarios

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader: it must return a scenario
// or an error, never panic, and whatever it accepts must validate and
// generate. `go test` runs the seeds; `go test -fuzz=FuzzParse` explores.
func FuzzParse(f *testing.F) {
	for _, name := range BuiltinNames() {
		data, _ := BuiltinYAML(name)
		f.Add(data)
	}
	f.Add([]byte(base))
	f.Add([]byte("name: x\ncluster: {nodes: -1}\nsteps: [{relabel: {}}]"))
	f.Add([]byte("cluster: [1,2]"))
	f.Add([]byte("steps: [{setup: {createQPS: 1e309}}]"))
	f.Add([]byte("name: x\nmeasure: {sampleInterval: 1h}\ncluster: {nodes: 1, namespaces: [{name: a}], workloads: {deploymentsPerNamespace: 1, replicas: 1}}\nsteps: [{setup: {}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz", data)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) && len(ve.Errors) == 0 {
				t.Fatal("ValidationError with no errors")
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted scenario does not validate: %v", err)
		}
		if s.PodCount() > 5000 {
			return // generation of big clusters is covered elsewhere
		}
		if _, err := s.Generate(); err != nil {
			t.Fatalf("accepted scenario does not generate: %v", err)
		}
	})
}
