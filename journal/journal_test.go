package journal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/journal/faultfs"
)

// payload is the deterministic content of the message at offset off, so
// every read can be checked against the offset it claims.
func payload(off uint64, size int) []byte {
	p := []byte(fmt.Sprintf("m%08d|", off))
	for len(p) < size {
		p = append(p, byte('a'+off%26))
	}
	return p
}

// batchAt builds a batch of n messages that will start at offset base.
func batchAt(base uint64, n, size int, raftIndex uint64) journal.Batch {
	b := journal.Batch{RaftIndex: raftIndex, Timestamp: int64(raftIndex) * 1000}
	for i := 0; i < n; i++ {
		off := base + uint64(i)
		m := journal.Message{Payload: payload(off, size)}
		if off%3 == 0 {
			m.Key = []byte(fmt.Sprintf("k%d", off))
			m.ID = fmt.Sprintf("id-%d", off)
			m.Headers = []journal.Header{{Key: "h", Value: []byte("v")}, {Key: "n", Value: []byte(fmt.Sprint(off))}}
			m.Timestamp = b.Timestamp + int64(i)
		}
		b.Messages = append(b.Messages, m)
	}
	return b
}

func open(t testing.TB, dir string, opts journal.Options) *journal.Journal {
	t.Helper()
	j, err := journal.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

// fill appends batches of n messages until the journal holds count
// messages, and returns the last Raft index used.
func fill(t testing.TB, j *journal.Journal, count, n, size int, raftIndex uint64) uint64 {
	t.Helper()
	for j.NextOffset() < uint64(count) {
		raftIndex++
		k := min(n, count-int(j.NextOffset()))
		if _, err := j.Append(batchAt(j.NextOffset(), k, size, raftIndex)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	return raftIndex
}

// readAll reads every message from offset from to the end and checks each
// against its offset.
func readAll(t testing.TB, j *journal.Journal, from uint64) []journal.Message {
	t.Helper()
	var out []journal.Message
	for next := from; next < j.NextOffset(); {
		msgs, err := j.Read(next, 500, 0)
		if err != nil {
			t.Fatalf("Read(%d): %v", next, err)
		}
		if len(msgs) == 0 {
			t.Fatalf("Read(%d) returned nothing before NextOffset %d", next, j.NextOffset())
		}
		for _, m := range msgs {
			if m.Offset != next {
				t.Fatalf("got offset %d, want %d", m.Offset, next)
			}
			checkMessage(t, m)
			next++
		}
		out = append(out, msgs...)
	}
	return out
}

func checkMessage(t testing.TB, m journal.Message) {
	t.Helper()
	want := payload(m.Offset, len(m.Payload))
	if !bytes.Equal(m.Payload, want) {
		t.Fatalf("offset %d: payload %q, want %q", m.Offset, m.Payload, want)
	}
	if m.Offset%3 == 0 {
		if string(m.Key) != fmt.Sprintf("k%d", m.Offset) || m.ID != fmt.Sprintf("id-%d", m.Offset) ||
			len(m.Headers) != 2 || m.Headers[1].Key != "n" || string(m.Headers[1].Value) != fmt.Sprint(m.Offset) {
			t.Fatalf("offset %d: key %q id %q headers %v", m.Offset, m.Key, m.ID, m.Headers)
		}
	} else if m.Key != nil || m.ID != "" || m.Headers != nil {
		t.Fatalf("offset %d: unexpected key %q id %q headers %v", m.Offset, m.Key, m.ID, m.Headers)
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, journal.Options{SegmentBytes: 4 << 10})
	last := fill(t, j, 1000, 7, 40, 0)
	if got := j.LastRaftIndex(); got != last {
		t.Fatalf("LastRaftIndex %d, want %d", got, last)
	}
	if n := len(j.Segments()); n < 5 {
		t.Fatalf("%d segments, want several at 4 KiB", n)
	}
	if got := len(readAll(t, j, 0)); got != 1000 {
		t.Fatalf("read %d messages, want 1000", got)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, journal.Options{SegmentBytes: 4 << 10})
	defer j.Close()
	if j.FirstOffset() != 0 || j.NextOffset() != 1000 || j.LastRaftIndex() != last {
		t.Fatalf("after reopen: first %d next %d index %d", j.FirstOffset(), j.NextOffset(), j.LastRaftIndex())
	}
	msgs := readAll(t, j, 0)
	// Batch 1 is stamped 1000; offset 3 carries its own stamp 1000+3.
	if msgs[1].Timestamp != 1000 || msgs[3].Timestamp != 1003 {
		t.Fatalf("timestamps %d and %d, want 1000 and 1003", msgs[1].Timestamp, msgs[3].Timestamp)
	}
	if err := j.Verify(); err != nil {
		t.Fatal(err)
	}
	// Appends continue where they stopped.
	base, err := j.Append(batchAt(1000, 3, 40, last+1))
	if err != nil || base != 1000 {
		t.Fatalf("Append after reopen: %d, %v", base, err)
	}
}

func TestTimestamps(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{})
	defer j.Close()
	b := journal.Batch{RaftIndex: 1, Timestamp: 5000, Messages: []journal.Message{
		{Payload: []byte("a")},                  // takes the batch's timestamp
		{Payload: []byte("b"), Timestamp: 4000}, // its own, earlier
		{Payload: []byte("c"), Timestamp: 9000}, // its own, later
	}}
	if _, err := j.Append(b); err != nil {
		t.Fatal(err)
	}
	msgs, err := j.Read(0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{5000, 4000, 9000} {
		if msgs[i].Timestamp != want {
			t.Errorf("message %d: timestamp %d, want %d", i, msgs[i].Timestamp, want)
		}
	}
	if b.Messages[0].Timestamp != 0 {
		t.Error("Append changed the caller's message")
	}
}

func TestReadLimits(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{})
	defer j.Close()
	fill(t, j, 100, 10, 100, 0)
	tests := []struct {
		name           string
		from           uint64
		max, maxBytes  int
		want, wantFrom int
	}{
		{"max messages", 0, 5, 0, 5, 0},
		{"mid batch", 13, 4, 0, 4, 13},
		{"byte limit", 0, 100, 350, 3, 0},
		{"byte limit below one message", 7, 100, 10, 1, 7},
		{"to the end", 95, 100, 0, 5, 95},
		{"past the end", 100, 10, 0, 0, 0},
		{"zero max", 0, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := j.Read(tc.from, tc.max, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tc.want {
				t.Fatalf("got %d messages, want %d", len(msgs), tc.want)
			}
			if len(msgs) > 0 && msgs[0].Offset != uint64(tc.wantFrom) {
				t.Fatalf("first offset %d, want %d", msgs[0].Offset, tc.wantFrom)
			}
		})
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, journal.Options{MaxMessageBytes: 1000, MaxBatchBytes: 5000})
	defer j.Close()
	if _, err := j.Append(batchAt(0, 2, 10, 5)); err != nil {
		t.Fatal(err)
	}
	size := func() int64 { return j.Segments()[0].Size }
	before := size()
	tests := []struct {
		name string
		b    journal.Batch
		want error
	}{
		{"empty batch", journal.Batch{RaftIndex: 9}, journal.ErrEmptyBatch},
		{"message too large", journal.Batch{RaftIndex: 9, Messages: []journal.Message{{Payload: make([]byte, 1001)}}}, journal.ErrMessageTooLarge},
		{"key counts toward the size", journal.Batch{RaftIndex: 9, Messages: []journal.Message{{Key: make([]byte, 500), Payload: make([]byte, 501)}}}, journal.ErrMessageTooLarge},
		{"batch too large", batchAt(2, 10, 900, 9), journal.ErrBatchTooLarge},
		{"same raft index", batchAt(2, 1, 10, 5), journal.ErrStaleIndex},
		{"older raft index", batchAt(2, 1, 10, 4), journal.ErrStaleIndex},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := j.Append(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if size() != before || j.NextOffset() != 2 || j.LastRaftIndex() != 5 {
				t.Fatalf("journal changed: size %d (was %d), next %d, index %d", size(), before, j.NextOffset(), j.LastRaftIndex())
			}
		})
	}
	if _, err := j.Append(batchAt(2, 1, 10, 6)); err != nil {
		t.Fatalf("a good batch after bad ones: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []journal.Options{{SegmentBytes: -1}, {MaxBatchBytes: 10}, {MaxMessageBytes: -5}, {IndexIntervalBytes: -1}} {
		if _, err := journal.Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs)
	return segs
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTornTailAtEveryByte cuts the last batch at every byte and checks
// that recovery keeps exactly the batches before it, whether or not the
// last batch was covered by a sync (and so named by the index).
func TestTornTailAtEveryByte(t *testing.T) {
	for _, synced := range []bool{false, true} {
		t.Run(fmt.Sprintf("last batch synced %v", synced), func(t *testing.T) {
			src := t.TempDir()
			j := open(t, src, journal.Options{})
			last := fill(t, j, 40, 4, 20, 0)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			lastStart := j.Segments()[0].Size
			if _, err := j.Append(batchAt(40, 5, 20, last+1)); err != nil {
				t.Fatal(err)
			}
			if synced {
				if err := j.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			end := j.Segments()[0].Size
			// Close syncs; keep the index as the chosen case left it by
			// copying the directory before Close.
			snap := t.TempDir()
			copyDir(t, src, snap)
			j.Close()
			for cut := lastStart; cut < end; cut++ {
				dir := filepath.Join(t.TempDir(), "j")
				copyDir(t, snap, dir)
				seg := segFiles(t, dir)[0]
				if err := os.Truncate(seg, cut); err != nil {
					t.Fatal(err)
				}
				j, err := journal.Open(dir, journal.Options{})
				if err != nil {
					t.Fatalf("cut at %d: Open: %v", cut, err)
				}
				if j.NextOffset() != 40 || j.LastRaftIndex() != last {
					t.Fatalf("cut at %d: next %d index %d, want 40 and %d", cut, j.NextOffset(), j.LastRaftIndex(), last)
				}
				if got := len(readAll(t, j, 0)); got != 40 {
					t.Fatalf("cut at %d: %d messages", cut, got)
				}
				if err := j.Verify(); err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				if fi, _ := os.Stat(seg); fi.Size() != lastStart {
					t.Fatalf("cut at %d: segment is %d bytes, want truncated to %d", cut, fi.Size(), lastStart)
				}
				// The same Raft entry can be applied again.
				if _, err := j.Append(batchAt(40, 5, 20, last+1)); err != nil {
					t.Fatalf("cut at %d: re-append: %v", cut, err)
				}
				j.Close()
			}
		})
	}
}

// TestBitFlipInSealedSegment flips one bit at every byte of a sealed
// segment: Open must succeed, Verify must name the segment, and no read
// may return data that differs from what was written.
func TestBitFlipInSealedSegment(t *testing.T) {
	src := t.TempDir()
	opts := journal.Options{SegmentBytes: 2 << 10}
	j := open(t, src, opts)
	fill(t, j, 200, 3, 30, 0)
	j.Close()
	segs := segFiles(t, src)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want at least 3", len(segs))
	}
	victim := filepath.Base(segs[1])
	orig, err := os.ReadFile(segs[1])
	if err != nil {
		t.Fatal(err)
	}
	dir := src
	for pos := range orig {
		b := bytes.Clone(orig)
		b[pos] ^= 1 << (pos % 8)
		if err := os.WriteFile(filepath.Join(dir, victim), b, 0o644); err != nil {
			t.Fatal(err)
		}
		// Damage in a sealed segment never stops Open (see repair_test.go).
		j, err := journal.Open(dir, opts)
		if err != nil {
			t.Fatalf("flip at %d: Open: %v", pos, err)
		}
		var ce *journal.CorruptionError
		if err := j.Verify(); !errors.As(err, &ce) || filepath.Base(ce.Segment) != victim || !errors.Is(err, journal.ErrCorrupt) {
			t.Fatalf("flip at %d: Verify: %v, want a CorruptionError naming %s", pos, err, victim)
		}
		// Reads either fail with a corruption error or return true data.
		sawErr := false
		for next := uint64(0); next < j.NextOffset(); {
			msgs, err := j.Read(next, 50, 0)
			if err != nil {
				if !errors.Is(err, journal.ErrCorrupt) {
					t.Fatalf("flip at %d: Read(%d): %v", pos, next, err)
				}
				sawErr = true
				next++
				continue
			}
			for _, m := range msgs {
				checkMessage(t, m)
			}
			next = msgs[len(msgs)-1].Offset + 1
		}
		if !sawErr {
			t.Fatalf("flip at %d: every read succeeded", pos)
		}
		j.Close()
	}
	// The same directory, repaired, is whole again.
	if err := os.WriteFile(filepath.Join(dir, victim), orig, 0o644); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, opts)
	defer j.Close()
	if err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedIndexNeverMisleads flips every byte of an index file: Open
// must still succeed and every read return the true data.
func TestDamagedIndexNeverMisleads(t *testing.T) {
	src := t.TempDir()
	opts := journal.Options{SegmentBytes: 4 << 10, IndexIntervalBytes: 200}
	j := open(t, src, opts)
	fill(t, j, 300, 3, 30, 0)
	j.Close()
	for _, idx := range []string{strings.TrimSuffix(segFiles(t, src)[0], ".seg") + ".idx", strings.TrimSuffix(segFiles(t, src)[len(segFiles(t, src))-1], ".seg") + ".idx"} {
		orig, err := os.ReadFile(idx)
		if err != nil {
			t.Fatal(err)
		}
		for pos := range orig {
			b := bytes.Clone(orig)
			b[pos] ^= 0x10
			if err := os.WriteFile(idx, b, 0o644); err != nil {
				t.Fatal(err)
			}
			j := open(t, src, opts)
			if got := len(readAll(t, j, 0)); got != 300 {
				t.Fatalf("flip at %d of %s: %d messages", pos, filepath.Base(idx), got)
			}
			j.Close()
		}
		if err := os.WriteFile(idx, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A missing index is rebuilt.
	dir := filepath.Join(t.TempDir(), "j")
	copyDir(t, src, dir)
	idxs, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	for _, p := range idxs {
		os.Remove(p)
	}
	j = open(t, dir, opts)
	if got := len(readAll(t, j, 0)); got != 300 {
		t.Fatalf("without indexes: %d messages", got)
	}
	j.Close()
}

func TestDamageBeforeTailIsCorruption(t *testing.T) {
	src := t.TempDir()
	j := open(t, src, journal.Options{})
	fill(t, j, 50, 5, 20, 0)
	j.Close()
	seg := segFiles(t, src)[0]
	data, _ := os.ReadFile(seg)
	for _, withIndex := range []bool{true, false} {
		t.Run(fmt.Sprintf("index %v", withIndex), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "j")
			copyDir(t, src, dir)
			b := bytes.Clone(data)
			b[len(b)/2] ^= 0xff // inside a middle batch; intact ones follow
			os.WriteFile(filepath.Join(dir, filepath.Base(seg)), b, 0o644)
			if !withIndex {
				// Without the index, Open scans the whole tail and finds it.
				os.Remove(strings.TrimSuffix(filepath.Join(dir, filepath.Base(seg)), ".seg") + ".idx")
				_, err := journal.Open(dir, journal.Options{})
				var ce *journal.CorruptionError
				if !errors.As(err, &ce) {
					t.Fatalf("Open: %v, want a CorruptionError", err)
				}
				fi, _ := os.Stat(filepath.Join(dir, filepath.Base(seg)))
				if fi.Size() != int64(len(data)) {
					t.Fatalf("Open truncated a corrupt segment to %d bytes", fi.Size())
				}
				return
			}
			// With the index the damage is before the anchor: Open does
			// not read it, but Verify and Read report it.
			j := open(t, dir, journal.Options{})
			defer j.Close()
			if err := j.Verify(); !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, journal.Options{SegmentBytes: 2 << 10})
	defer j.Close()
	fill(t, j, 300, 5, 30, 0)
	segs := j.Segments()
	if len(segs) < 5 {
		t.Fatalf("%d segments", len(segs))
	}
	// Only whole segments below the offset go.
	mid := segs[2].BaseOffset + 1
	n, err := j.DeleteBefore(mid)
	if err != nil || n != 2 {
		t.Fatalf("DeleteBefore(%d) = %d, %v; want 2", mid, n, err)
	}
	if j.FirstOffset() != segs[2].BaseOffset {
		t.Fatalf("first %d, want %d", j.FirstOffset(), segs[2].BaseOffset)
	}
	if _, err := os.Stat(segs[0].Path); !os.IsNotExist(err) {
		t.Fatalf("deleted segment still on disk: %v", err)
	}
	if _, err := j.Read(segs[1].BaseOffset, 10, 0); !errors.Is(err, journal.ErrOffsetTruncated) {
		t.Fatalf("Read below first: %v", err)
	}
	readAll(t, j, j.FirstOffset())

	// By age: batches are stamped with raftIndex*1000.
	segs = j.Segments()
	cut := j.AgeCutoff(segs[1].MaxTimestamp + 1)
	if cut != segs[2].BaseOffset {
		t.Fatalf("AgeCutoff = %d, want %d", cut, segs[2].BaseOffset)
	}
	if cut := j.AgeCutoff(math.MaxInt64); cut != segs[len(segs)-1].BaseOffset {
		t.Fatalf("AgeCutoff(max) = %d, want the tail's base %d", cut, segs[len(segs)-1].BaseOffset)
	}
	if cut := j.AgeCutoff(math.MinInt64); cut != segs[0].BaseOffset {
		t.Fatalf("AgeCutoff(min) = %d, want nothing deleted", cut)
	}
	// By size.
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	if cut := j.SizeCutoff(total); cut != segs[0].BaseOffset {
		t.Fatalf("SizeCutoff(total) = %d", cut)
	}
	if cut := j.SizeCutoff(total - 1); cut != segs[1].BaseOffset {
		t.Fatalf("SizeCutoff(total-1) = %d, want %d", cut, segs[1].BaseOffset)
	}
	// The tail is never deleted, whatever the offset.
	if _, err := j.DeleteBefore(math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if got := j.Segments(); len(got) != 1 || got[0].BaseOffset != segs[len(segs)-1].BaseOffset {
		t.Fatalf("after deleting everything: %+v", got)
	}
	readAll(t, j, j.FirstOffset())
	j.Close()
	j = open(t, dir, journal.Options{SegmentBytes: 2 << 10})
	if j.FirstOffset() != segs[len(segs)-1].BaseOffset || j.NextOffset() != 300 {
		t.Fatalf("after reopen: first %d next %d", j.FirstOffset(), j.NextOffset())
	}
}

// TestReadsRaceRetention reads while segments are deleted: every read
// returns true data or ErrOffsetTruncated, never garbage.
func TestReadsRaceRetention(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{SegmentBytes: 1 << 10})
	defer j.Close()
	fill(t, j, 2000, 4, 30, 0)
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next := uint64(0); next < 2000; {
				msgs, err := j.Read(next, 7, 0)
				if errors.Is(err, journal.ErrOffsetTruncated) {
					next = j.FirstOffset()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				for _, m := range msgs {
					checkMessage(t, m)
				}
				next = msgs[len(msgs)-1].Offset + 1
			}
		}()
	}
	for off := uint64(0); off < 2000; off += 50 {
		if _, err := j.DeleteBefore(off); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestConcurrentReadsWhileAppending(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{SegmentBytes: 8 << 10})
	defer j.Close()
	const total = 5000
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next := uint64(0); next < total; {
				msgs, err := j.Read(next, 100, 0)
				if err != nil {
					t.Error(err)
					return
				}
				for _, m := range msgs {
					if m.Offset != next {
						t.Errorf("offset %d, want %d", m.Offset, next)
						return
					}
					checkMessage(t, m)
					next++
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if err := j.Sync(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	fill(t, j, total, 9, 25, 0)
	wg.Wait()
}

func TestManySegmentsReopen(t *testing.T) {
	dir := t.TempDir()
	opts := journal.Options{SegmentBytes: 1 << 10}
	j := open(t, dir, opts)
	last := fill(t, j, 5000, 3, 20, 0)
	n := len(j.Segments())
	j.Close()
	if n < 200 {
		t.Fatalf("%d segments, want at least 200", n)
	}
	j = open(t, dir, opts)
	defer j.Close()
	if len(j.Segments()) != n || j.NextOffset() != 5000 || j.LastRaftIndex() != last {
		t.Fatalf("reopen: %d segments, next %d, index %d", len(j.Segments()), j.NextOffset(), j.LastRaftIndex())
	}
	readAll(t, j, 0)
	if err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyTailAfterRollIsDropped(t *testing.T) {
	dir := t.TempDir()
	opts := journal.Options{SegmentBytes: 1 << 10}
	j := open(t, dir, opts)
	last := fill(t, j, 100, 5, 20, 0)
	j.Close()
	// A crash after a roll created the next segment but before its first
	// batch reached the disk leaves an empty file.
	segs := segFiles(t, dir)
	next := filepath.Join(dir, fmt.Sprintf("%020d.seg", 100))
	if err := os.WriteFile(next, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, opts)
	defer j.Close()
	if got := segFiles(t, dir); len(got) != len(segs) {
		t.Fatalf("%d segment files, want %d", len(got), len(segs))
	}
	if j.LastRaftIndex() != last || j.NextOffset() != 100 {
		t.Fatalf("index %d next %d", j.LastRaftIndex(), j.NextOffset())
	}
	if _, err := j.Append(batchAt(100, 2, 20, last+1)); err != nil {
		t.Fatal(err)
	}
}

func TestGapBetweenSegmentsIsCorruption(t *testing.T) {
	dir := t.TempDir()
	opts := journal.Options{SegmentBytes: 1 << 10}
	j := open(t, dir, opts)
	fill(t, j, 200, 5, 20, 0)
	j.Close()
	segs := segFiles(t, dir)
	os.Remove(segs[1])
	_, err := journal.Open(dir, opts)
	if !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Open with a missing segment: %v", err)
	}
}

func TestOffsetForTime(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{SegmentBytes: 2 << 10, IndexIntervalBytes: 300})
	defer j.Close()
	fill(t, j, 500, 5, 30, 0) // batch k (raft index k) stamped k*1000, offsets 5(k-1)...
	tests := []struct {
		ts   int64
		want uint64
	}{
		{math.MinInt64, 0},
		{1000, 0},
		{1001, 3}, // offsets 0-2 are stamped 1000, offset 3 carries 1000+3
		{2000, 5},
		{50500, 250}, // batch 50 holds 50000-50004, batch 51 starts at 51000
		{100000, 495},
		{100001, 498},
		{100005, 500}, // after the last message: NextOffset
	}
	for _, tc := range tests {
		got, err := j.OffsetForTime(tc.ts)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("OffsetForTime(%d) = %d, want %d", tc.ts, got, tc.want)
		}
	}
}

func TestClosed(t *testing.T) {
	j := open(t, t.TempDir(), journal.Options{})
	fill(t, j, 10, 5, 10, 0)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Append(batchAt(10, 1, 10, 100)); !errors.Is(err, journal.ErrClosed) {
		t.Errorf("Append: %v", err)
	}
	if _, err := j.Read(0, 1, 0); !errors.Is(err, journal.ErrClosed) {
		t.Errorf("Read: %v", err)
	}
	if err := j.Sync(); !errors.Is(err, journal.ErrClosed) {
		t.Errorf("Sync: %v", err)
	}
}

// TestIOFaults injects each disk failure after some synced batches: the
// failing call reports it, the journal refuses writes from then on, and a
// reopen on a healthy disk finds every synced batch.
func TestIOFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(f *faultfs.FS)
	}{
		{"torn write", func(f *faultfs.FS) { f.FailWritesAfter(37, faultfs.ErrInjected) }},
		{"short write", func(f *faultfs.FS) { f.ShortWriteAfter(100) }},
		{"full disk", func(f *faultfs.FS) { f.FailWritesAfter(1500, faultfs.ErrNoSpace) }},
		{"fsync error", func(f *faultfs.FS) { f.FailSyncs(faultfs.ErrInjected) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := faultfs.New(nil)
			opts := journal.Options{SegmentBytes: 1 << 10, FS: fs}
			j := open(t, dir, opts)
			last := fill(t, j, 100, 4, 20, 0)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			tc.inject(fs)
			var failed error
			for i := uint64(1); i <= 200 && failed == nil; i++ {
				if _, err := j.Append(batchAt(j.NextOffset(), 4, 20, last+i)); err != nil {
					failed = err
				} else if err := j.Sync(); err != nil {
					failed = err
				}
			}
			if !errors.Is(failed, journal.ErrFailed) {
				t.Fatalf("fault not reported as ErrFailed: %v", failed)
			}
			fs.Reset()
			if _, err := j.Append(batchAt(j.NextOffset(), 1, 20, last+1000)); !errors.Is(err, journal.ErrFailed) {
				t.Fatalf("Append after the fault: %v", err)
			}
			if err := j.Sync(); !errors.Is(err, journal.ErrFailed) {
				t.Fatalf("Sync after the fault: %v", err)
			}
			j.Close()
			j = open(t, dir, journal.Options{SegmentBytes: 1 << 10})
			defer j.Close()
			if j.NextOffset() < 100 {
				t.Fatalf("synced messages lost: next %d", j.NextOffset())
			}
			readAll(t, j, 0)
			if err := j.Verify(); err != nil {
				t.Fatal(err)
			}
			if _, err := j.Append(batchAt(j.NextOffset(), 1, 20, j.LastRaftIndex()+1)); err != nil {
				t.Fatalf("Append after reopen: %v", err)
			}
		})
	}
}
