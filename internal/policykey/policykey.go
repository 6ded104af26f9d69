package policykey

import (
	"cmp"
	"slices"

	"github.com/stampede-sim/stampede/internal/identity"
)

// Key is one allowed (remote identity, destination port, protocol) of a
// local endpoint's ingress policy; everything not listed is dropped. Zero
// fields are wildcards: Identity 0 (AnyIdentity) allows any peer, Port 0
// any port, Proto 0 any protocol; Key{} allows everything.
type Key struct {
	Identity identity.ID
	Port     uint16
	Proto    uint8
}

// AnyIdentity is the wildcard identity of a key (any peer). It is not a
// valid ipcache identity.
const AnyIdentity identity.ID = 0

// Protocol numbers of Key.Proto (IANA, as in the IPv4 header).
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Compare orders keys by identity, port, then protocol: the order of every
// allowed set in the project.
func Compare(a, b Key) int {
	switch {
	case a.Identity != b.Identity:
		return cmp.Compare(a.Identity, b.Identity)
	case a.Port != b.Port:
		return cmp.Compare(a.Port, b.Port)
	}
	return cmp.Compare(a.Proto, b.Proto)
}

// Sort sorts keys in place in Compare order (repeats stay).
func Sort(keys []Key) { slices.SortFunc(keys, Compare) }

// Sorted returns keys itself when it is sorted and free of repeats (what
// callers normally have), and a sorted, repeat-free copy otherwise. A nil
// input gives an empty, non-nil set.
func Sorted(keys []Key) []Key {
	for i := 1; i < len(keys); i++ {
		if Compare(keys[i-1], keys[i]) >= 0 {
			out := slices.Clone(keys)
			Sort(out)
			return slices.Compact(out)
		}
	}
	if keys == nil {
		return []Key{}
	}
	return keys
}

// Equal reports whether two sets hold the same keys. Sets that share
// their first element are one (immutable, shared) set and equal without a
// scan: the policy cache hands the same slice to every endpoint with the
// same resolution.
func Equal(a, b []Key) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
}

// Merge returns the union of two sets; when one is empty it returns the
// other itself.
func Merge(a, b []Key) []Key {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]Key, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := Compare(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// Diff returns the keys of a missing from b (del) and of b missing from a
// (add), each in Compare order: what turns set a into set b.
func Diff(a, b []Key) (del, add []Key) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := Compare(a[i], b[j]); {
		case c < 0:
			del = append(del, a[i])
			i++
		case c > 0:
			add = append(add, b[j])
			j++
		default:
			i++
			j++
		}
	}
	del = append(del, a[i:]...)
	add = append(add, b[j:]...)
	return del, add
}

// DiffCount is len(del)+len(add) of Diff, without building them.
func DiffCount(a, b []Key) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch c := Compare(a[i], b[j]); {
		case c < 0:
			n++
			i++
		case c > 0:
			n++
			j++
		default:
			i++
			j++
		}
	}
	return n + len(a) - i + len(b) - j
}

// Apply returns set a without the keys of del and with the keys of add,
// as a new set. del must be sorted; add may be any subset of a Diff's add,
// in any order. With a prefix of each of Diff's results it gives what a
// set holds after an update that failed part-way.
func Apply(a, del, add []Key) []Key {
	out := make([]Key, 0, len(a)+len(add))
	for _, k := range a {
		if _, found := slices.BinarySearchFunc(del, k, Compare); !found {
			out = append(out, k)
		}
	}
	out = append(out, add...)
	Sort(out)
	return slices.Compact(out)
}
