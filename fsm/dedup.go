package fsm

// dedupEntry remembers where a message with a producer id was stored.
type dedupEntry struct {
	ID        string `json:"id"`
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
	Timestamp int64  `json:"ts"` // leader's timestamp of the publish
}

// dedupTable holds a topic's message ids seen within its dedup window, in
// the order they were applied. Pruning follows that order, not the
// timestamps, so it is deterministic even when a new leader's clock is
// behind the old one's.
type dedupTable struct {
	byID  map[string]int // id -> position in order, offset by dropped
	order []dedupEntry
	head  int // entries before head are pruned
}

func (d *dedupTable) get(id string) (dedupEntry, bool) {
	i, ok := d.byID[id]
	if !ok {
		return dedupEntry{}, false
	}
	return d.order[i-d.head], true
}

func (d *dedupTable) add(e dedupEntry) {
	if d.byID == nil {
		d.byID = map[string]int{}
	}
	d.byID[e.ID] = d.head + len(d.order)
	d.order = append(d.order, e)
}

// prune forgets the oldest entries stamped before cutoff.
func (d *dedupTable) prune(cutoff int64) {
	n := 0
	for n < len(d.order) && d.order[n].Timestamp < cutoff {
		delete(d.byID, d.order[n].ID)
		n++
	}
	if n == 0 {
		return
	}
	d.head += n
	d.order = d.order[n:]
	if cap(d.order) > 1024 && len(d.order) < cap(d.order)/4 {
		d.order = append([]dedupEntry(nil), d.order...)
	}
}

// entries lists the live entries in applied order.
func (d *dedupTable) entries() []dedupEntry { return append([]dedupEntry(nil), d.order...) }

// load replaces the table with entries in applied order.
func (d *dedupTable) load(es []dedupEntry) {
	*d = dedupTable{}
	for _, e := range es {
		d.add(e)
	}
}
