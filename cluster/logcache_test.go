package cluster

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory log store that counts reads.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, l *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, l)
}

func entry(i uint64, size int) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, size)}
}

func TestLogCache(t *testing.T) {
	st := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(st, 8, 1000)
	for i := uint64(1); i <= 20; i++ {
		if err := c.StoreLogs([]*raft.Log{entry(i, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(i uint64) (cached bool) {
		t.Helper()
		before := st.reads
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("GetLog(%d): %+v %v", i, l, err)
		}
		return st.reads == before
	}
	// 8 slots: 13..20 are cached, older ones come from the store.
	for i := uint64(1); i <= 20; i++ {
		if got, want := get(i), i >= 13; got != want {
			t.Fatalf("entry %d cached %v, want %v", i, got, want)
		}
	}
	// The byte bound: 400-byte entries, 1000 bytes: the newest two stay.
	for i := uint64(21); i <= 24; i++ {
		if err := c.StoreLogs([]*raft.Log{entry(i, 400)}); err != nil {
			t.Fatal(err)
		}
	}
	if c.bytes > 1000 || !get(24) || !get(23) || get(22) {
		t.Fatalf("byte bound: %d bytes cached; 22 cached %v", c.bytes, get(22))
	}
	// Compaction of a prefix keeps the rest; a suffix truncation drops it.
	if err := c.DeleteRange(1, 23); err != nil {
		t.Fatal(err)
	}
	if !get(24) {
		t.Fatal("entry 24 dropped by the compaction of 1..23")
	}
	if err := c.StoreLogs([]*raft.Log{entry(25, 10), entry(26, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRange(26, 26); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(26, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog of a truncated entry: %+v %v", l, err)
	}
	if !get(25) {
		t.Fatal("entry 25 dropped by the truncation of 26")
	}
	// A gap (a snapshot installed on a follower) starts the cache over.
	if err := c.StoreLogs([]*raft.Log{entry(100, 10)}); err != nil {
		t.Fatal(err)
	}
	if !get(100) || c.lo != 100 || c.hi != 100 {
		t.Fatalf("after a gap: lo %d hi %d", c.lo, c.hi)
	}
}
