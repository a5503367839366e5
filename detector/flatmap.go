package detector

// flatMap is an open-addressing hash table from 64-bit keys that are
// already uniformly distributed hashes (group keys and value hashes), so it
// skips the second hashing a Go map would do and probes one flat array.
// Linear probing with backward-shift deletion leaves no tombstones, so
// long-running churn (groups evicted and created) does not slow lookups.
type flatMap[V any] struct {
	keys []uint64 // 0 marks an empty slot; key 0 is stored as zeroKey
	vals []V
	n    int
	mask uint64
}

const zeroKey = 0x9e3779b97f4a7c15 // stands in for key 0

func fixKey(k uint64) uint64 {
	if k == 0 {
		return zeroKey
	}
	return k
}

func (m *flatMap[V]) len() int { return m.n }

func (m *flatMap[V]) get(k uint64) (V, bool) {
	var zero V
	if m.n == 0 {
		return zero, false
	}
	k = fixKey(k)
	for i := k & m.mask; ; i = (i + 1) & m.mask {
		switch m.keys[i] {
		case k:
			return m.vals[i], true
		case 0:
			return zero, false
		}
	}
}

// ptr returns a pointer to k's value, inserting the zero value if absent.
// The pointer is valid until the next put, ptr or delete.
func (m *flatMap[V]) ptr(k uint64) (*V, bool) {
	if (m.n+1)*4 > len(m.keys)*3 {
		m.grow()
	}
	k = fixKey(k)
	for i := k & m.mask; ; i = (i + 1) & m.mask {
		switch m.keys[i] {
		case k:
			return &m.vals[i], true
		case 0:
			m.keys[i] = k
			m.n++
			return &m.vals[i], false
		}
	}
}

func (m *flatMap[V]) put(k uint64, v V) {
	p, _ := m.ptr(k)
	*p = v
}

func (m *flatMap[V]) delete(k uint64) {
	if m.n == 0 {
		return
	}
	k = fixKey(k)
	i := k & m.mask
	for ; m.keys[i] != k; i = (i + 1) & m.mask {
		if m.keys[i] == 0 {
			return
		}
	}
	// Backward-shift: move later entries of the probe run into the hole.
	var zero V
	for j := (i + 1) & m.mask; ; j = (j + 1) & m.mask {
		kj := m.keys[j]
		if kj == 0 {
			break
		}
		home := kj & m.mask
		// Move kj if its home is not in the cyclic range (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			m.keys[i], m.vals[i] = kj, m.vals[j]
			i = j
		}
	}
	m.keys[i], m.vals[i] = 0, zero
	m.n--
}

func (m *flatMap[V]) clear() {
	if m.n == 0 {
		return
	}
	clear(m.keys)
	clear(m.vals)
	m.n = 0
}

func (m *flatMap[V]) grow() {
	size := 2 * len(m.keys)
	if size < 8 {
		size = 8
	}
	oldK, oldV := m.keys, m.vals
	m.keys, m.vals = make([]uint64, size), make([]V, size)
	m.mask = uint64(size - 1)
	m.n = 0
	for i, k := range oldK {
		if k != 0 {
			for j := k & m.mask; ; j = (j + 1) & m.mask {
				if m.keys[j] == 0 {
					m.keys[j], m.vals[j] = k, oldV[i]
					m.n++
					break
				}
			}
		}
	}
}
