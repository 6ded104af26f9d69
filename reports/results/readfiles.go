package results

import (
	"errors"
	"strings"
)

// ErrNoResults is returned by ReadResultsFiles for an empty list.
var ErrNoResults = errors.New("no results files given")

// ReadResultsFiles reads and validates several results files.
func ReadResultsFiles(paths []string) ([]*Results, error) {
	if len(paths) == 0 {
		return nil, ErrNoResults
	}
	var out []*Results
	for _, p := range paths {
		r, err := ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// UnusableInputError says a set of runs cannot be used together: the
// gate cannot compare them or the capacity model cannot fit them
// (different scenarios, partial runs, nothing to compare).
type UnusableInputError struct {
	Problems []string
}

func (e *UnusableInputError) Error() string {
	return "cannot compare: " + strings.Join(e.Problems, "; ")
}
