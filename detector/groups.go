package detector

import (
	"hash/maphash"
	"math"
	"strconv"

	"github.com/vigil-sec/vigil/event"
)

// keyHasher hashes group values with a per-process random seed, so an
// attacker cannot aim values at one map slot. A collision of two groups in
// 64 bits merges their state; at a million groups the chance is below 1e-7.
type keyHasher struct {
	h maphash.Hash
}

func newKeyHasher(seed maphash.Seed) *keyHasher {
	k := &keyHasher{}
	k.h.SetSeed(seed)
	return k
}

// sum hashes the values of fields in e.
func (k *keyHasher) sum(e *event.Event, fields []*event.Field) uint64 {
	k.h.Reset()
	for _, f := range fields {
		writeField(&k.h, f, e)
	}
	return k.h.Sum64()
}

// sumField hashes one field's value.
func (k *keyHasher) sumField(e *event.Event, f *event.Field) uint64 {
	k.h.Reset()
	writeField(&k.h, f, e)
	return k.h.Sum64()
}

func writeField(h *maphash.Hash, f *event.Field, e *event.Event) {
	switch f.Kind {
	case event.String:
		h.WriteString(f.Str(e))
	case event.Int:
		var b [8]byte
		v := uint64(f.Int(e))
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	case event.Float:
		var b [8]byte
		v := math.Float64bits(f.Float(e))
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	h.WriteByte(0xff) // separator: ("ab","c") and ("a","bc") differ
}

// fieldText is a field's value as alerts show it; strings are copied so the
// group owns them (events alias decoder buffers).
func fieldText(f *event.Field, e *event.Event) string {
	switch f.Kind {
	case event.String:
		return string([]byte(f.Str(e)))
	case event.Int:
		return strconv.FormatInt(f.Int(e), 10)
	case event.Float:
		return strconv.FormatFloat(f.Float(e), 'f', -1, 64)
	}
	return ""
}

// group is one tracked group of a rule: its identity and kind-specific state.
type group[S any] struct {
	key        uint64
	values     []string
	prev, next *group[S]
	state      S
}

// groupTable holds a rule's groups with a cap: past it the group touched
// least recently is evicted (and counted), so an attacker rotating
// addresses costs bounded memory. Not safe for concurrent use: each
// detector shard owns its tables.
type groupTable[S any] struct {
	m          flatMap[*group[S]]
	head, tail *group[S] // head = most recently touched
	max        int
	free       *group[S]
	evictions  uint64
	reset      func(*S)
}

func newGroupTable[S any](max int, reset func(*S)) *groupTable[S] {
	return &groupTable[S]{max: max, reset: reset}
}

// get returns the group for key, creating it (with values taken from e)
// when missing, and marks it most recently used.
func (t *groupTable[S]) get(key uint64, e *event.Event, fields []*event.Field) (*group[S], bool) {
	if g, ok := t.m.get(key); ok {
		t.touch(g)
		return g, false
	}
	if t.m.len() >= t.max {
		t.evict(t.tail)
		t.evictions++
	}
	g := t.free
	if g != nil {
		t.free = nil
		t.reset(&g.state)
		g.values = g.values[:0]
	} else {
		g = &group[S]{}
	}
	g.key = key
	for _, f := range fields {
		g.values = append(g.values, fieldText(f, e))
	}
	t.m.put(key, g)
	t.pushFront(g)
	return g, true
}

func (t *groupTable[S]) len() int { return t.m.len() }

func (t *groupTable[S]) touch(g *group[S]) {
	if t.head == g {
		return
	}
	t.unlink(g)
	t.pushFront(g)
}

// evict removes g; its memory is kept for the next new group.
func (t *groupTable[S]) evict(g *group[S]) {
	if g == nil {
		return
	}
	t.unlink(g)
	t.m.delete(g.key)
	t.free = g
}

func (t *groupTable[S]) pushFront(g *group[S]) {
	g.prev = nil
	g.next = t.head
	if t.head != nil {
		t.head.prev = g
	}
	t.head = g
	if t.tail == nil {
		t.tail = g
	}
}

func (t *groupTable[S]) unlink(g *group[S]) {
	if g.prev != nil {
		g.prev.next = g.next
	} else {
		t.head = g.next
	}
	if g.next != nil {
		g.next.prev = g.prev
	} else {
		t.tail = g.prev
	}
	g.prev, g.next = nil, nil
}

// groupValues pairs a group's stored values with the fields they belong to.
func groupValues(fields []*event.Field, values []string) []GroupValue {
	out := make([]GroupValue, len(fields))
	for i, f := range fields {
		out[i] = GroupValue{Field: f, Value: values[i]}
	}
	return out
}

// keyCache computes each distinct list of group fields' hash once per
// event, however many rules group by it (most packs group by a handful of
// fields: ip, api_key_id, org_id, actor_id).
type keyCache struct {
	hasher *keyHasher
	lists  [][]*event.Field
	sums   []uint64
	gens   []uint32
	gen    uint32
}

// index registers a field list and returns its slot.
func (c *keyCache) index(fields []*event.Field) int {
	for i, l := range c.lists {
		if sameFields(l, fields) {
			return i
		}
	}
	c.lists = append(c.lists, fields)
	c.sums = append(c.sums, 0)
	c.gens = append(c.gens, 0)
	return len(c.lists) - 1
}

func sameFields(a, b []*event.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// next starts a new event.
func (c *keyCache) next() {
	c.gen++
	if c.gen == 0 { // wrapped: forget everything
		clear(c.gens)
		c.gen = 1
	}
}

// sum returns the hash of slot i's fields for the current event.
func (c *keyCache) sum(i int, e *event.Event) uint64 {
	if c.gens[i] != c.gen {
		c.sums[i] = c.hasher.sum(e, c.lists[i])
		c.gens[i] = c.gen
	}
	return c.sums[i]
}

// grouped reports whether e has a value for every group field. An event
// without one (an absent optional string field) belongs to no group: a
// rule grouped by api_key_id is about keys, and lumping every keyless
// event into one "" group would fire on traffic that has no key at all.
func grouped(e *event.Event, fields []*event.Field) bool {
	for _, f := range fields {
		if f.Kind == event.String && f.Str(e) == "" {
			return false
		}
	}
	return true
}
