package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm/snapstore"
	"github.com/walmq/walmq/journal"
)

// diskKillFS is the operating system's file system, with a kill that
// closes every file the journal opened without letting it write anything
// more: what SIGKILL does to a node's journals. The page cache keeps
// what was written, synced or not, as after a real SIGKILL.
type diskKillFS struct {
	journal.OSFS
	mu    sync.Mutex
	files []journal.File
}

func (k *diskKillFS) OpenFile(name string, flag int, perm os.FileMode) (journal.File, error) {
	f, err := k.OSFS.OpenFile(name, flag, perm)
	if err == nil {
		k.mu.Lock()
		k.files = append(k.files, f)
		k.mu.Unlock()
	}
	return f, err
}

func (k *diskKillFS) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range k.files {
		f.Close()
	}
	k.files = nil
}

// diskTestJournal is one partition's journal in a node-like data
// directory, with what was appended to it.
type diskTestJournal struct {
	part    int
	dir     string
	fs      *diskKillFS
	j       *journal.Journal
	raft    uint64
	next    uint64 // offset of the next message appended
	synced  uint64 // next offset when Sync last returned
	payload [][]byte
}

const diskTestTopic = "jepsen"

// diskTestDataDir makes <tmp>/n1/data with the node's directories, and
// things in topics/ that are not journals.
func diskTestDataDir(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "n1", "data")
	for _, d := range []string{"raft", "snapshots", filepath.Join("topics", ".trash-old", "0"), filepath.Join("topics", diskTestTopic)} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "topics", diskTestTopic, "CREATED"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// diskSegmentBytes is small, so that the journals have several sealed
// segments.
const diskSegmentBytes = 2048

func diskOptions(fs journal.FS) journal.Options {
	return journal.Options{SegmentBytes: diskSegmentBytes, IndexIntervalBytes: 256, FS: fs}
}

func diskOpenJournal(t *testing.T, data string, part int) *diskTestJournal {
	t.Helper()
	return diskOpenJournalSeg(t, data, part, diskSegmentBytes)
}

func diskOpenJournalSeg(t *testing.T, data string, part int, segmentBytes int64) *diskTestJournal {
	t.Helper()
	d := &diskTestJournal{part: part, dir: filepath.Join(data, "topics", diskTestTopic, fmt.Sprint(part)), fs: &diskKillFS{}}
	opts := diskOptions(d.fs)
	opts.SegmentBytes = segmentBytes
	j, err := journal.Open(d.dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	d.j = j
	return d
}

func diskPayload(part int, off uint64, n int) []byte {
	p := []byte(fmt.Sprintf("p%d-%d|", part, off))
	for len(p) < n {
		p = append(p, byte('a'+(off+uint64(len(p)))%26))
	}
	return p
}

// appendBatches appends n batches of 1-4 messages of random sizes.
func (d *diskTestJournal) appendBatches(t *testing.T, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		d.raft++
		b := journal.Batch{RaftIndex: d.raft, Timestamp: int64(d.raft) * 1e6}
		for k := range 1 + rng.Intn(4) {
			off := d.next + uint64(k)
			p := diskPayload(d.part, off, 8+rng.Intn(150))
			b.Messages = append(b.Messages, journal.Message{ID: fmt.Sprintf("p%d-%d", d.part, off), Payload: p})
			d.payload = append(d.payload, p)
		}
		first, err := d.j.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if first != d.next {
			t.Fatalf("Append at %d, want %d", first, d.next)
		}
		d.next += uint64(len(b.Messages))
	}
}

func (d *diskTestJournal) sync(t *testing.T) {
	t.Helper()
	if err := d.j.Sync(); err != nil {
		t.Fatal(err)
	}
	d.synced = d.next
}

func (d *diskTestJournal) tail() journal.SegmentInfo {
	segs := d.j.Segments()
	return segs[len(segs)-1]
}

// diskReadAll reads every message it can, going on after a damaged record
// at the next segment, and checks each message against what was appended.
// It returns the offsets read and the errors met.
func diskReadAll(t *testing.T, j *journal.Journal, part int, want [][]byte) (map[uint64]bool, []error) {
	t.Helper()
	got := map[uint64]bool{}
	var errs []error
	segs := j.Segments()
	for from := j.FirstOffset(); from < j.NextOffset(); {
		msgs, err := j.Read(from, 64, 0)
		for _, m := range msgs {
			if m.Offset >= uint64(len(want)) {
				t.Fatalf("read offset %d, only %d were appended", m.Offset, len(want))
			}
			if got[m.Offset] {
				t.Fatalf("offset %d read twice", m.Offset)
			}
			if !bytes.Equal(m.Payload, want[m.Offset]) || m.ID != fmt.Sprintf("p%d-%d", part, m.Offset) {
				t.Fatalf("offset %d read back as %q (id %q), appended %q", m.Offset, m.Payload, m.ID, want[m.Offset])
			}
			got[m.Offset] = true
		}
		if len(msgs) > 0 {
			from = msgs[len(msgs)-1].Offset + 1
		}
		if err != nil {
			if !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("Read(%d): %v", from, err)
			}
			errs = append(errs, err)
			next := j.NextOffset()
			for _, s := range segs {
				if s.BaseOffset > from {
					next = s.BaseOffset
					break
				}
			}
			from = next
			continue
		}
		if len(msgs) == 0 {
			t.Fatalf("Read(%d) returned nothing before NextOffset %d", from, j.NextOffset())
		}
	}
	return got, errs
}

// diskReopenIntact opens a journal after loseUnsyncedTails and checks that
// it opens, holds at least keep messages, every one of them as appended,
// undamaged, and takes appends again.
func diskReopenIntact(t *testing.T, d *diskTestJournal, keep uint64) uint64 {
	t.Helper()
	j, err := journal.Open(d.dir, diskOptions(nil))
	if err != nil {
		t.Fatalf("partition %d: Open after the fault: %v", d.part, err)
	}
	defer j.Close()
	next := j.NextOffset()
	if next < keep || next > d.next {
		t.Fatalf("partition %d: journal ends at offset %d after the fault; synced %d, appended %d", d.part, next, keep, d.next)
	}
	got, errs := diskReadAll(t, j, d.part, d.payload)
	if len(errs) > 0 || uint64(len(got)) != next {
		t.Fatalf("partition %d: read %d of %d messages, errors %v", d.part, len(got), next, errs)
	}
	if err := j.Verify(); err != nil {
		t.Fatalf("partition %d: Verify: %v", d.part, err)
	}
	if dm := j.Damaged(); len(dm) > 0 {
		t.Fatalf("partition %d: damaged: %+v", d.part, dm)
	}
	// The replay appends the lost entries again.
	b := journal.Batch{RaftIndex: j.LastRaftIndex() + 1, Messages: []journal.Message{{Payload: []byte("again")}}}
	if off, err := j.Append(b); err != nil || off != next {
		t.Fatalf("partition %d: Append after the fault: offset %d, %v; want %d", d.part, off, err, next)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	return next
}

func diskFileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestLoseUnsyncedTailsKeepsSynced: journals whose last appends were
// synced lose nothing; journals with appends after the last sync lose
// some of those, never a synced one, and recover.
func TestLoseUnsyncedTailsKeepsSynced(t *testing.T) {
	var mid, boundary, emptied int
	for seed := int64(1); seed <= 25; seed++ {
		for _, unsynced := range []bool{false, true} {
			rng := rand.New(rand.NewSource(seed))
			data := diskTestDataDir(t)
			var js []*diskTestJournal
			for p := range 3 {
				d := diskOpenJournal(t, data, p)
				for range 1 + rng.Intn(3) {
					d.appendBatches(t, rng, 5+rng.Intn(30))
					d.sync(t)
				}
				if unsynced {
					d.appendBatches(t, rng, 1+rng.Intn(12))
				}
				js = append(js, d)
			}
			type before struct {
				tail     string
				size     int64
				tailBase uint64
			}
			var was []before
			for _, d := range js {
				tl := d.tail()
				was = append(was, before{tl.Path, tl.Size, tl.BaseOffset})
				d.fs.kill()
			}
			sum, err := loseUnsyncedTails(data, rand.New(rand.NewSource(seed)))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			t.Logf("seed %d unsynced=%v: %s", seed, unsynced, sum)
			if !strings.HasPrefix(sum, "n1: jepsen/0 tail ") {
				t.Errorf("summary %q", sum)
			}
			for i, d := range js {
				size := diskFileSize(t, was[i].tail)
				switch {
				case !unsynced && size != was[i].size:
					t.Fatalf("seed %d partition %d: synced tail cut from %d to %d bytes (%s)", seed, i, was[i].size, size, sum)
				case unsynced && size >= was[i].size:
					t.Fatalf("seed %d partition %d: tail of %d bytes with unsynced appends not cut (%s)", seed, i, was[i].size, sum)
				}
				if size == 0 {
					emptied++
				}
				keep := max(d.synced, was[i].tailBase) // sealed segments were synced by the roll
				next := diskReopenIntact(t, d, keep)
				if !unsynced && next != d.next {
					t.Fatalf("seed %d partition %d: lost %d synced messages", seed, i, d.next-next)
				}
			}
			mid += strings.Count(sum, "mid-record")
			boundary += strings.Count(sum, "at a record boundary")
		}
	}
	t.Logf("cuts: %d mid-record, %d at a boundary, %d tails emptied", mid, boundary, emptied)
	if mid == 0 || boundary == 0 {
		t.Errorf("cuts: %d mid-record, %d at a record boundary; want both", mid, boundary)
	}
}

// TestLoseUnsyncedTailsRespectsSnapshots: a tail without index entries (as
// Restore leaves it) is not cut below the size a snapshot records for it.
func TestLoseUnsyncedTailsRespectsSnapshots(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		data := diskTestDataDir(t)
		d := diskOpenJournalSeg(t, data, 0, 1<<20) // one segment
		d.appendBatches(t, rng, 3+rng.Intn(8))
		d.sync(t)
		covered := d.next
		tl := d.tail()
		d.appendBatches(t, rng, 1+rng.Intn(3))
		d.fs.kill()
		if d.tail().Path != tl.Path {
			t.Fatalf("seed %d: rolled; the test wants one tail", seed)
		}
		idx := strings.TrimSuffix(tl.Path, ".seg") + ".idx"
		if err := os.Truncate(idx, 0); err != nil {
			t.Fatal(err)
		}
		// A completed snapshot of the node's store holds the tail up to the
		// sync, hard-linked; one being built (.tmp) is ignored, as the
		// node removes it.
		name := diskTestTopic + "/0/" + filepath.Base(tl.Path)
		store, err := snapstore.New(filepath.Join(data, "snapshots"), 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for i, size := range []int64{tl.Size, tl.Size + 1} {
			sink, err := store.Create(1, uint64(40+i), 2, raft.Configuration{}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			k := sink.(*snapstore.Sink)
			if err := k.SetManifest([]byte("{}")); err != nil {
				t.Fatal(err)
			}
			if err := k.AddFile(name, tl.Path, size); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if err := k.Close(); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, k.ID())
			}
		}
		before := diskFileSize(t, tl.Path)
		sum, err := loseUnsyncedTails(data, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		after := diskFileSize(t, tl.Path)
		if after < tl.Size || after >= before {
			t.Fatalf("seed %d: tail cut from %d to %d bytes, the snapshot holds %d (%s)", seed, before, after, tl.Size, sum)
		}
		for _, id := range ids {
			_, rc, err := store.Open(id)
			if err != nil {
				t.Fatalf("seed %d: snapshot %s after the fault: %v", seed, id, err)
			}
			rc.Close()
		}
		diskReopenIntact(t, d, covered)
	}
	// An unreadable snapshot: nothing is known, nothing is cut.
	data := diskTestDataDir(t)
	d := diskOpenJournal(t, data, 0)
	d.appendBatches(t, rand.New(rand.NewSource(1)), 5)
	d.fs.kill()
	if err := os.MkdirAll(filepath.Join(data, "snapshots", "1-2-3"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := diskFileSize(t, d.tail().Path)
	if _, err := loseUnsyncedTails(data, rand.New(rand.NewSource(1))); err == nil {
		t.Fatal("no error for a snapshot without meta.json")
	}
	if after := diskFileSize(t, d.tail().Path); after != before {
		t.Fatalf("tail cut from %d to %d despite the error", before, after)
	}
}

// TestLoseUnsyncedTailsKeepsTailBeforeDamage: a tail the cut would empty
// keeps its first record when the segment before it is damaged, so Open
// does not have to make a damaged segment the tail.
func TestLoseUnsyncedTailsKeepsTailBeforeDamage(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		data := diskTestDataDir(t)
		d := diskOpenJournal(t, data, 0)
		d.appendBatches(t, rng, 10)
		d.sync(t)
		n := len(d.j.Segments())
		for len(d.j.Segments()) == n {
			d.appendBatches(t, rng, 1) // rolls: the new tail has no index entry
		}
		d.appendBatches(t, rng, rng.Intn(3))
		segs := d.j.Segments()
		tl, prev := segs[len(segs)-1], segs[len(segs)-2]
		d.fs.kill()
		b, err := os.ReadFile(prev.Path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 0x10 // damage the sealed segment's last record
		if err := os.WriteFile(prev.Path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tb, _ := os.ReadFile(tl.Path)
		first := diskRecordLen(tb, 0)
		if first == 0 {
			t.Fatal("tail has no intact first record")
		}
		sum, err := loseUnsyncedTails(data, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		if got := diskFileSize(t, tl.Path); got < first {
			t.Fatalf("seed %d: tail cut to %d bytes, below its first record's %d (%s)", seed, got, first, sum)
		}
		j, err := journal.Open(d.dir, diskOptions(nil))
		if err != nil {
			t.Fatalf("seed %d: Open: %v (%s)", seed, err, sum)
		}
		if len(j.Damaged()) != 1 {
			t.Errorf("seed %d: damaged %+v", seed, j.Damaged())
		}
		j.Close()
	}
}

// diskSegFiles reads every segment file of the journals under data.
func diskSegFiles(t *testing.T, data string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	paths, _ := filepath.Glob(filepath.Join(data, "topics", diskTestTopic, "*", "*.seg"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

// TestFlipSealedBitDetected: the flipped bit is in a sealed segment, and
// the journal reports the damage (Verify, Damaged, reads) and never returns
// a message of the damaged record.
func TestFlipSealedBitDetected(t *testing.T) {
	var atOpen int
	for seed := int64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewSource(seed))
		data := diskTestDataDir(t)
		var js []*diskTestJournal
		for p := range 3 {
			d := diskOpenJournal(t, data, p)
			d.appendBatches(t, rng, 20+rng.Intn(60))
			if rng.Intn(2) == 0 {
				d.sync(t)
			}
			d.fs.kill()
			js = append(js, d)
		}
		tails := map[string]bool{}
		for _, d := range js {
			tails[d.tail().Path] = true
		}
		orig := diskSegFiles(t, data)
		sum, err := flipSealedBit(data, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		var flipped string
		var pos int
		for p, b := range diskSegFiles(t, data) {
			if bytes.Equal(b, orig[p]) {
				continue
			}
			if flipped != "" {
				t.Fatalf("seed %d: both %s and %s changed", seed, flipped, p)
			}
			flipped = p
			diff := 0
			for i := range b {
				if x := b[i] ^ orig[p][i]; x != 0 {
					diff += bitsSet(x)
					pos = i
				}
			}
			if len(b) != len(orig[p]) || diff != 1 {
				t.Fatalf("seed %d: %s changed by %d bits", seed, p, diff)
			}
		}
		switch {
		case flipped == "":
			t.Fatalf("seed %d: nothing changed (%s)", seed, sum)
		case tails[flipped]:
			t.Fatalf("seed %d: flipped the tail %s", seed, flipped)
		case !strings.Contains(sum, filepath.Base(flipped)) || !strings.Contains(sum, fmt.Sprintf("byte %d ", pos)):
			t.Errorf("seed %d: summary %q does not name %s byte %d", seed, sum, filepath.Base(flipped), pos)
		}
		// The record holding the bit, as written.
		o := orig[flipped]
		starts, ends := diskRecordBounds(o, 0)
		var recBase, recCount uint64
		for k := range starts {
			if int64(pos) >= starts[k] && int64(pos) < ends[k] {
				recBase = binary.LittleEndian.Uint64(o[starts[k]+16:])
				recCount = uint64(binary.LittleEndian.Uint32(o[starts[k]+24:]))
			}
		}
		if recCount == 0 {
			t.Fatalf("seed %d: byte %d is in no record of %s", seed, pos, flipped)
		}
		var d *diskTestJournal
		for _, c := range js {
			if filepath.Dir(flipped) == c.dir {
				d = c
			}
		}
		j, err := journal.Open(d.dir, diskOptions(nil))
		if err != nil {
			t.Fatalf("seed %d: Open: %v", seed, err)
		}
		if len(j.Damaged()) > 0 {
			atOpen++
		}
		got, errs := diskReadAll(t, j, d.part, d.payload)
		if len(errs) == 0 {
			t.Errorf("seed %d: reading everything met no damage (%s)", seed, sum)
		}
		for off := recBase; off < recBase+recCount; off++ {
			if got[off] {
				t.Errorf("seed %d: offset %d of the damaged record was read", seed, off)
			}
		}
		var ce *journal.CorruptionError
		if err := j.Verify(); !errors.As(err, &ce) || !errors.Is(err, journal.ErrCorrupt) || ce.Segment != flipped {
			t.Errorf("seed %d: Verify: %v, want corruption of %s", seed, err, flipped)
		}
		dm := j.Damaged()
		if len(dm) != 1 || dm[0].Err.Segment != flipped || dm[0].Err.Offset > int64(pos) {
			t.Errorf("seed %d: Damaged %+v, want %s at or before byte %d", seed, dm, flipped, pos)
		}
		j.Close()
	}
	t.Logf("damage found by Open itself in %d of 40 runs", atOpen)
}

func bitsSet(x byte) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestFlipSealedBitNoSealedSegment: a journal of one segment, or of a
// sealed segment and a tail that recovery will remove, has none to flip.
func TestFlipSealedBitNoSealedSegment(t *testing.T) {
	data := diskTestDataDir(t)
	if _, err := flipSealedBit(data, rand.New(rand.NewSource(1))); !errors.Is(err, errNoSealedSegment) {
		t.Fatalf("no journals: %v", err)
	}
	if sum, err := loseUnsyncedTails(data, rand.New(rand.NewSource(1))); err != nil || sum != "n1: no journals" {
		t.Fatalf("no journals: %q, %v", sum, err)
	}
	rng := rand.New(rand.NewSource(1))
	d := diskOpenJournal(t, data, 0)
	d.appendBatches(t, rng, 3)
	d.sync(t)
	d.fs.kill()
	if _, err := flipSealedBit(data, rng); !errors.Is(err, errNoSealedSegment) {
		t.Fatalf("one segment: %v", err)
	}

	d = diskOpenJournal(t, data, 1)
	for len(d.j.Segments()) < 2 {
		d.appendBatches(t, rng, 1)
	}
	d.fs.kill()
	tail := d.tail().Path
	if err := os.Truncate(tail, 30); err != nil { // a torn first record
		t.Fatal(err)
	}
	if _, err := flipSealedBit(data, rng); !errors.Is(err, errNoSealedSegment) {
		t.Fatalf("tail without a record: %v", err)
	}
	if err := os.Truncate(tail, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := flipSealedBit(data, rng); !errors.Is(err, errNoSealedSegment) {
		t.Fatalf("empty tail: %v", err)
	}
}
