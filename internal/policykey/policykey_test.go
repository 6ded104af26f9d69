package policykey

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/internal/identity"
)

func TestCompareOrder(t *testing.T) {
	// Identity first, then port, then protocol; wildcards (0) first.
	want := []Key{
		{},
		{Port: 80, Proto: ProtoTCP},
		{Identity: 256},
		{Identity: 256, Proto: ProtoUDP},
		{Identity: 256, Port: 53, Proto: ProtoTCP},
		{Identity: 256, Port: 53, Proto: ProtoUDP},
		{Identity: 256, Port: 80, Proto: ProtoTCP},
		{Identity: 257, Port: 1},
	}
	got := slices.Clone(want)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
	Sort(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Sort (-want +got):\n%s", d)
	}
	for i := 1; i < len(want); i++ {
		if c := Compare(want[i-1], want[i]); c >= 0 {
			t.Errorf("Compare(%v, %v) = %d, want < 0", want[i-1], want[i], c)
		}
		if c := Compare(want[i], want[i-1]); c <= 0 {
			t.Errorf("Compare(%v, %v) = %d, want > 0", want[i], want[i-1], c)
		}
	}
}

func TestSorted(t *testing.T) {
	sorted := []Key{{Identity: 1}, {Identity: 2}}
	if got := Sorted(sorted); &got[0] != &sorted[0] {
		t.Error("Sorted copied a sorted, repeat-free set")
	}
	if got := Sorted(nil); got == nil || len(got) != 0 {
		t.Errorf("Sorted(nil) = %#v, want an empty non-nil set", got)
	}
	in := []Key{{Identity: 3}, {Identity: 1}, {Identity: 3}, {Identity: 2}}
	orig := slices.Clone(in)
	got := Sorted(in)
	if d := cmp.Diff([]Key{{Identity: 1}, {Identity: 2}, {Identity: 3}}, got); d != "" {
		t.Errorf("Sorted (-want +got):\n%s", d)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("Sorted modified its input: %v", in)
	}
}

func TestEqual(t *testing.T) {
	a := []Key{{Identity: 1, Port: 80}, {Identity: 2}}
	for _, tc := range []struct {
		name string
		a, b []Key
		want bool
	}{
		{"both empty", nil, []Key{}, true},
		{"same slice", a, a, true},
		{"equal copies", a, slices.Clone(a), true},
		{"different length", a, a[:1], false},
		{"different key", a, []Key{{Identity: 1, Port: 80}, {Identity: 3}}, false},
		{"different proto", []Key{{Identity: 1}}, []Key{{Identity: 1, Proto: ProtoTCP}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Equal(tc.a, tc.b); got != tc.want {
				t.Errorf("Equal(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestMergeReturnsTheOtherWhenOneIsEmpty(t *testing.T) {
	a := []Key{{Identity: 1}}
	if got := Merge(a, nil); &got[0] != &a[0] {
		t.Error("Merge(a, nil) is not a itself")
	}
	if got := Merge(nil, a); &got[0] != &a[0] {
		t.Error("Merge(nil, a) is not a itself")
	}
}

// randomSet is a sorted, repeat-free set of up to n keys from a small
// universe, so that random sets overlap.
func randomSet(r *rand.Rand, n int) []Key {
	m := map[Key]struct{}{}
	for range r.IntN(n + 1) {
		m[Key{Identity: identity.ID(256 + r.IntN(20)), Port: uint16(r.IntN(3) * 80), Proto: []uint8{0, ProtoTCP, ProtoUDP}[r.IntN(3)]}] = struct{}{}
	}
	return Sorted(slices.Collect(maps.Keys(m)))
}

// setOf is the reference model of a set: a map.
func setOf(keys ...[]Key) map[Key]bool {
	m := map[Key]bool{}
	for _, ks := range keys {
		for _, k := range ks {
			m[k] = true
		}
	}
	return m
}

func TestSetOperationsAgainstMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 1))
	for i := range 500 {
		a, b := randomSet(r, 30), randomSet(r, 30)
		ma, mb := setOf(a), setOf(b)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			merged := Merge(a, b)
			if d := cmp.Diff(setOf(a, b), setOf(merged)); d != "" {
				t.Fatalf("Merge keys (-want +got):\n%s", d)
			}
			if !slices.Equal(merged, Sorted(merged)) {
				t.Fatalf("Merge result not sorted and repeat-free: %v", merged)
			}
			del, add := Diff(a, b)
			for _, k := range del {
				if !ma[k] || mb[k] {
					t.Fatalf("Diff del has %v: in a %v, in b %v", k, ma[k], mb[k])
				}
			}
			for _, k := range add {
				if ma[k] || !mb[k] {
					t.Fatalf("Diff add has %v: in a %v, in b %v", k, ma[k], mb[k])
				}
			}
			if got, want := len(del)+len(add), len(setOf(a, b))*2-len(a)-len(b); got != want {
				t.Fatalf("Diff gives %d changes, want %d", got, want)
			}
			if n := DiffCount(a, b); n != len(del)+len(add) {
				t.Fatalf("DiffCount = %d, Diff gives %d", n, len(del)+len(add))
			}
			if got := Apply(a, del, add); !Equal(got, b) {
				t.Fatalf("Apply(a, Diff(a, b)) = %v, want %v", got, b)
			}
			// A part-way update: the first half of each.
			d, ad := del[:len(del)/2], add[:len(add)/2]
			want := setOf(a, ad)
			for _, k := range d {
				delete(want, k)
			}
			if diff := cmp.Diff(want, setOf(Apply(a, d, ad))); diff != "" {
				t.Fatalf("Apply of a partial diff (-want +got):\n%s", diff)
			}
		})
	}
}
