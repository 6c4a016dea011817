package fsm_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/fsm/snapstore"
	"github.com/walmq/walmq/journal"
)

// TestDamagedSegmentNeverShipsInASnapshot flips a bit in a sealed segment
// that a snapshot links: streaming the snapshot fails loudly instead of
// shipping it, and restoring it is refused and changes nothing.
func TestDamagedSegmentNeverShipsInASnapshot(t *testing.T) {
	live := newMachine(t, filepath.Join(t.TempDir(), "topics"))
	live.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	for i := 0; i < 40; i++ {
		live.ok(&fsm.Publish{Topic: "t", Timestamp: int64(i), Messages: msgs(fmt.Sprintf("b%d", i), 5, false)})
	}
	p, err := live.f.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	segs := p.Journal().Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several sealed ones", len(segs))
	}
	snap, err := live.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store, err := snapstore.New(filepath.Join(t.TempDir(), "snaps"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	store.SetFileCheck(fsm.CheckSnapshotFile)
	sink, err := store.Create(raft.SnapshotVersionMax, live.index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	metas, err := store.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("List: %v %v", metas, err)
	}
	// Whole, it streams.
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("streaming a whole snapshot: %v", err)
	}
	rc.Close()

	// The snapshot's copy is the journal's file (a hard link).
	b, err := os.ReadFile(segs[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	f, err := os.OpenFile(segs[1].Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	t.Run("stream", func(t *testing.T) {
		_, rc, err := store.Open(metas[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		if !errors.Is(err, snapstore.ErrCorrupt) || !errors.Is(err, journal.ErrCorrupt) {
			t.Fatalf("streaming a damaged snapshot: %v, want a corruption error", err)
		}
	})
	t.Run("restore", func(t *testing.T) {
		fresh := newMachine(t, filepath.Join(t.TempDir(), "topics"))
		fresh.ok(&fsm.CreateTopic{Name: "before", Config: fsm.TopicConfig{Partitions: 1}})
		fresh.ok(&fsm.Publish{Topic: "before", Messages: msgs("x", 3, false)})
		want := observe(t, fresh.f)
		_, rc, err := store.Open(metas[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		// The local reader path: Restore reads the files, not the stream.
		if err := fresh.f.Restore(rc); !errors.Is(err, journal.ErrCorrupt) {
			t.Fatalf("Restore of a damaged snapshot: %v, want a corruption error", err)
		}
		if got := observe(t, fresh.f); !reflect.DeepEqual(got, want) {
			t.Fatalf("a refused restore changed the state\n got %+v\nwant %+v", got, want)
		}
	})
}
