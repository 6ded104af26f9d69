package scenarios

import (
	"fmt"
	"math"
	"strconv"

	yamlv3 "go.yaml.in/yaml/v3"
)

// nonFinite finds the YAML floats JSON cannot carry (.nan, .inf, -.inf) and
// names their field paths: the YAML-to-JSON conversion Parse relies on
// fails on them with a message that names no field.
func nonFinite(data []byte) []FieldError {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return nil
	}
	var l errs
	walkNonFinite(&l, "", &doc)
	return l
}

func walkNonFinite(l *errs, path string, n *yamlv3.Node) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			walkNonFinite(l, path, c)
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkNonFinite(l, join(path, n.Content[i].Value), n.Content[i+1])
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			walkNonFinite(l, fmt.Sprintf("%s[%d]", path, i), c)
		}
	case yamlv3.ScalarNode:
		if n.ShortTag() != "!!float" {
			return
		}
		var f float64
		if err := n.Decode(&f); err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			l.add(path, "must be a finite number, got %s", strconv.Quote(n.Value))
		}
	}
}
