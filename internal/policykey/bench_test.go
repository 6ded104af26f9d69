package policykey

import (
	"fmt"
	"testing"

	"github.com/stampede-sim/stampede/internal/identity"
)

// benchSets returns two sets of n keys each where every changed-th key of
// b differs from a: an endpoint's policy before and after an identity
// churn touched some of its peers.
func benchSets(n, changed int) (a, b []Key) {
	a = make([]Key, n)
	b = make([]Key, n)
	for i := range n {
		a[i] = Key{Identity: identity.ID(1000 + 2*i), Port: 8080, Proto: ProtoTCP}
		b[i] = a[i]
		if changed > 0 && i%changed == 0 {
			b[i].Identity++
		}
	}
	return a, b
}

func BenchmarkDiff(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		for _, changed := range []int{0, 100, 2} {
			b.Run(fmt.Sprintf("keys=%d/every=%d", n, changed), func(b *testing.B) {
				x, y := benchSets(n, changed)
				var del, add []Key
				for b.Loop() {
					del, add = Diff(x, y)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n), "ns/key")
				b.ReportMetric(float64(len(del)+len(add)), "changes")
			})
		}
	}
}

func BenchmarkDiffCount(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			x, y := benchSets(n, 100)
			for b.Loop() {
				DiffCount(x, y)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n), "ns/key")
		})
	}
}

// BenchmarkMerge merges disjoint sets, as the policy cache merges the
// keys of a rule's ports for different selectors.
func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			x, y := benchSets(n, 1) // every key of y differs: disjoint
			var out []Key
			for b.Loop() {
				out = Merge(x, y)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(out)), "ns/key")
		})
	}
}

func BenchmarkEqual(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("keys=%d/copies", n), func(b *testing.B) {
			x, _ := benchSets(n, 0)
			y := append([]Key(nil), x...)
			for b.Loop() {
				if !Equal(x, y) {
					b.Fatal("copies differ")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}
