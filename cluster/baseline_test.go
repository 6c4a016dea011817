package cluster_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/walmq/walmq/journal"
)

// The floor of a durable publish's latency, measured beside
// BenchmarkPublishOne: the Raft log store's commit of one small entry, and
// the disk's write + fdatasync of 4 KiB.

// BenchmarkBaselineBoltStoreLog stores one 200-byte entry per op in
// raft-boltdb, as raft does for each committed batch (bolt syncs twice).
func BenchmarkBaselineBoltStoreLog(b *testing.B) {
	s, err := raftboltdb.NewBoltStore(filepath.Join(b.TempDir(), "raft.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 200)
	var i uint64
	for b.Loop() {
		i++
		if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineFdatasync appends 4 KiB and fdatasyncs per op.
func BenchmarkBaselineFdatasync(b *testing.B) {
	f, err := journal.OSFS{}.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var pos int64
	for b.Loop() {
		if _, err := f.WriteAt(buf, pos); err != nil {
			b.Fatal(err)
		}
		pos += int64(len(buf))
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
