package cluster

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the newest Raft entries in memory, in front of the log
// store, bounded by count and by bytes: replication reads every entry it
// sends back from the log store (a bolt transaction each), and the entries
// a follower needs are nearly always the newest. raft.LogCache bounds only
// the count, and publish entries may be MiBs each.
type logCache struct {
	store raft.LogStore

	mu       sync.RWMutex
	slots    []*raft.Log
	lo, hi   uint64 // cached indexes are in [lo, hi]; lo > hi when empty
	bytes    int
	maxBytes int
}

func newLogCache(store raft.LogStore, slots, maxBytes int) *logCache {
	return &logCache{store: store, slots: make([]*raft.Log, slots), lo: 1, maxBytes: maxBytes}
}

// IsMonotonic implements raft.MonotonicLogStore when the store does.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	l := c.slots[idx%uint64(len(c.slots))]
	c.mu.RUnlock()
	if l != nil && l.Index == idx {
		*log = *l
		return nil
	}
	return c.store.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("cluster: store logs: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if c.lo > c.hi || l.Index != c.hi+1 {
			c.reset() // not contiguous: start over from this entry
			c.lo = l.Index
		}
		c.hi = l.Index
		k := l.Index % uint64(len(c.slots))
		if old := c.slots[k]; old != nil {
			c.bytes -= len(old.Data)
			if old.Index >= c.lo {
				c.lo = old.Index + 1
			}
		}
		c.slots[k] = l
		c.bytes += len(l.Data)
		for c.bytes > c.maxBytes && c.lo < c.hi {
			c.evict(c.lo)
			c.lo++
		}
	}
	return nil
}

func (c *logCache) evict(idx uint64) {
	k := idx % uint64(len(c.slots))
	if l := c.slots[k]; l != nil && l.Index == idx {
		c.bytes -= len(l.Data)
		c.slots[k] = nil
	}
}

func (c *logCache) reset() {
	clear(c.slots)
	c.bytes = 0
	c.lo, c.hi = 1, 0
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange drops the range from the store and the cache: a prefix
// (compaction after a snapshot) or a suffix (a follower's conflicting
// entries) leaves the rest of the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	switch {
	case c.lo > c.hi || max < c.lo || min > c.hi:
	case min <= c.lo && max < c.hi:
		for i := c.lo; i <= max; i++ {
			c.evict(i)
		}
		c.lo = max + 1
	case min > c.lo && max >= c.hi:
		for i := min; i <= c.hi; i++ {
			c.evict(i)
		}
		c.hi = min - 1
	default:
		c.reset()
	}
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}
