package scenarios

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHostileFiles feeds the loader files a user (or an attacker) could
// write by mistake or on purpose; each must get an error that says where
// the problem is, or, where the file is fine, be accepted.
func TestHostileFiles(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error, in any order; none: accepted
	}{
		{"name escapes the output directory", repl("name: t", "name: ../../x")(base), []string{`name: invalid name "../../x"`}},
		{"name with a separator", repl("name: t", "name: a/b")(base), []string{`name: invalid name "a/b"`}},
		{"sweep size name", repl("name: t", "name: relabel@50")(base), nil},
		{"second document", base + "---\nname: other\n", []string{"src.yaml: document 2 (line 20): a scenario file holds one YAML document"}},
		{"second document after an empty one", base + "---\n---\nname: other\n", []string{"document 3 (line 21)"}},
		{"broken second document", base + "---\nx: [\n", []string{"src.yaml: document 2: yaml: line"}},
		{"trailing document marker", base + "---\n", nil},
		{"leading document marker", "---\n" + base, nil},
		{"int64 seed", repl("name: t", "name: t\nseed: 5000000000")(base), nil},
		{"seed beyond int64", repl("name: t", "name: t\nseed: 50000000000000000000")(base), []string{"seed: out of range: 50000000000000000000 is not a 64-bit integer"}},
		{"NUL byte", "name: t\n\x00", []string{"src.yaml: line 2, column 1: control character U+0000"}},
		{"escape character", repl("name: t", "name: t\x1b[31m")(base), []string{"line 2, column 8: control character U+001B"}},
		{"not UTF-8", "name: t\ncluster:\n  nodes: \xff\xfe\n", []string{"src.yaml: line 3, column 10: byte 0xff is not UTF-8"}},
		{"UTF-16", "\xff\xfen\x00a\x00", []string{"line 1, column 1: byte 0xff is not UTF-8"}},
		{"too deep", "name: t\nsteps: " + strings.Repeat("[", 20000), []string{"line 2", "exceeded max depth"}},
		{"duplicate key", "name: a\nname: b\n", []string{"line 2", `key "name" already set`}},
		{"unknown field and out-of-range value together", repl("nodes: 4", "nodes: -3\n  bogusField: 1")(base), []string{
			"cluster.bogusField: unknown field", "cluster.nodes: must be >= 1, got -3",
		}},
		{"the file from the issue", "name: t\ncluster: {nodes: -3, bogusField: 1}\n", []string{
			"cluster.bogusField: unknown field", "cluster.nodes: must be >= 1, got -3",
		}},
		{"wrong type with other errors", repl("nodes: 4", "nodes: four")(repl("protocol: TCP", "protocol: SCTP")(base)), []string{
			`cluster.nodes: must be an integer, got string "four"`, "policies[0].ingress[0].ports[0].protocol: must be TCP or UDP",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("src.yaml", []byte(tt.in))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v, want it accepted", err)
				}
				if strings.Contains(tt.in, "seed: 5000000000") && s.Seed != 5000000000 {
					t.Errorf("seed = %d, want 5000000000", s.Seed)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestSetAsideValueReportedOnce: a value of the wrong type is reported as
// such, not again as the default that took its place.
func TestSetAsideValueReportedOnce(t *testing.T) {
	_, err := Parse("f.yaml", []byte(repl("name: t", "name: [a]")(base)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	if len(ve.Errors) != 1 || ve.Errors[0].Path != "name" || !strings.Contains(ve.Errors[0].Msg, "must be a string") {
		t.Errorf("errors = %v, want only name: must be a string", ve.Errors)
	}
}

// TestLoadFileTooLarge: the error gives the file's real size and the
// limit, not the number of bytes read before giving up.
func TestLoadFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	size := int64(50 << 20)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil { // sparse: no 50 MB written
		t.Fatal(err)
	}
	f.Close()
	_, err = LoadFile(path)
	want := "scenario is " + strconv.FormatInt(size, 10) + " bytes, over the limit of " + strconv.Itoa(MaxFileSize) + " bytes"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("LoadFile = %v, want %q", err, want)
	}
	_, err = Parse("data", make([]byte, MaxFileSize+7))
	want = "scenario is " + strconv.Itoa(MaxFileSize+7) + " bytes, over the limit"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse = %v, want %q", err, want)
	}
}
