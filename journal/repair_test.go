package journal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/walmq/walmq/journal"
)

// sealedOpts make segments of a few records each, with index entries
// inside them, so that damage falls both before a segment's anchor (found
// by reads and scrubs) and after it (found by Open).
var sealedOpts = journal.Options{SegmentBytes: 1 << 10, IndexIntervalBytes: 200}

// records returns copies of the records of j holding offsets [from, to).
func records(t testing.TB, j *journal.Journal, from, to uint64) [][]byte {
	t.Helper()
	var out [][]byte
	if err := j.ReadRecords(context.Background(), from, to, func(rec []byte) error {
		out = append(out, bytes.Clone(rec))
		return nil
	}); err != nil {
		t.Fatalf("ReadRecords(%d, %d): %v", from, to, err)
	}
	return out
}

// recordStarts lists the byte position of every record of a segment file.
func recordStarts(recs [][]byte) []int64 {
	var out []int64
	var pos int64
	for _, r := range recs {
		out = append(out, pos)
		pos += int64(len(r))
	}
	return out
}

// recordAt is the index of the record holding byte pos.
func recordAt(starts []int64, pos int64) int {
	k := 0
	for k+1 < len(starts) && starts[k+1] <= pos {
		k++
	}
	return k
}

// replace replaces the segment at base with recs and commits.
func replace(j *journal.Journal, base uint64, recs [][]byte) error {
	r, err := j.BeginReplace(base)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := r.Append(rec); err != nil {
			r.Abort()
			return err
		}
	}
	return r.Commit()
}

// sealedFixture is a closed journal of several sealed segments and what
// its second segment holds.
type sealedFixture struct {
	dir        string
	victim     string // path of the second segment
	orig       []byte // its bytes
	base, next uint64 // its offsets
	recs       [][]byte
	total      uint64
}

func newSealedFixture(t *testing.T) *sealedFixture {
	t.Helper()
	dir := t.TempDir()
	j := open(t, dir, sealedOpts)
	fill(t, j, 200, 3, 30, 0)
	segs := j.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	f := &sealedFixture{dir: dir, victim: segs[1].Path, base: segs[1].BaseOffset, next: segs[1].NextOffset, total: 200}
	f.recs = records(t, j, f.base, f.next)
	j.Close()
	var err error
	if f.orig, err = os.ReadFile(f.victim); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(f.recs, nil); !bytes.Equal(got, f.orig) {
		t.Fatalf("ReadRecords gave %d bytes, the segment holds %d", len(got), len(f.orig))
	}
	return f
}

// checkReads reads every offset on its own: each read returns the true
// message or a CorruptionError naming the victim. It returns the offsets
// refused.
func (f *sealedFixture) checkReads(t *testing.T, j *journal.Journal) map[uint64]bool {
	t.Helper()
	refused := map[uint64]bool{}
	for off := uint64(0); off < f.total; off++ {
		msgs, err := j.Read(off, 1, 0)
		var ce *journal.CorruptionError
		switch {
		case errors.As(err, &ce):
			if ce.Segment != f.victim {
				t.Fatalf("Read(%d): %v, want damage in %s", off, err, f.victim)
			}
			refused[off] = true
		case err != nil:
			t.Fatalf("Read(%d): %v", off, err)
		case len(msgs) != 1 || msgs[0].Offset != off:
			t.Fatalf("Read(%d) returned %d messages", off, len(msgs))
		default:
			checkMessage(t, msgs[0])
		}
	}
	return refused
}

// offsetsOf is the offsets [first, next) of record k of the victim.
func (f *sealedFixture) offsetsOf(k int) (uint64, uint64) {
	first := f.base
	for i := 0; i < k; i++ {
		first += uint64(countOf(f.recs[i]))
	}
	return first, first + uint64(countOf(f.recs[k]))
}

// countOf is the count field of a record (journal/doc.go).
func countOf(rec []byte) uint32 {
	return uint32(rec[24]) | uint32(rec[25])<<8 | uint32(rec[26])<<16 | uint32(rec[27])<<24
}

// TestSealedSegmentBitFlipRepaired flips one bit at every byte of a sealed
// segment. Open must succeed; the segment must be found damaged (by Open
// or by a scrub) at the record holding the flip; reads before that record
// are served, reads of it never are; replacing the segment with its true
// records makes every read whole and the file as it was.
func TestSealedSegmentBitFlipRepaired(t *testing.T) {
	f := newSealedFixture(t)
	starts := recordStarts(f.recs)
	for pos := range f.orig {
		b := bytes.Clone(f.orig)
		b[pos] ^= 1 << (pos % 8)
		if err := os.WriteFile(f.victim, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var reported []journal.Damage
		opts := sealedOpts
		opts.OnDamage = func(d journal.Damage) { reported = append(reported, d) }
		j, err := journal.Open(f.dir, opts)
		if err != nil {
			t.Fatalf("flip at %d: Open: %v", pos, err)
		}
		k := recordAt(starts, int64(pos))
		err = j.Scrub(context.Background(), f.base, nil)
		var ce *journal.CorruptionError
		if !errors.As(err, &ce) || ce.Segment != f.victim || ce.Offset != starts[k] {
			t.Fatalf("flip at %d: Scrub: %v, want damage in %s at byte %d", pos, err, f.victim, starts[k])
		}
		d := j.Damaged()
		if len(d) != 1 || d[0].BaseOffset != f.base || d[0].NextOffset != f.next || d[0].Err.Segment != f.victim {
			t.Fatalf("flip at %d: Damaged() = %+v", pos, d)
		}
		if len(reported) != 1 || reported[0].BaseOffset != f.base {
			t.Fatalf("flip at %d: OnDamage reported %+v, want the segment once", pos, reported)
		}
		refused := f.checkReads(t, j)
		dFirst, dNext := f.offsetsOf(k)
		for off := f.base; off < dFirst; off++ {
			if refused[off] {
				t.Fatalf("flip at %d: offset %d, before the damaged record, refused", pos, off)
			}
		}
		for off := dFirst; off < dNext; off++ {
			if !refused[off] {
				t.Fatalf("flip at %d: offset %d of the damaged record served", pos, off)
			}
		}
		if err := replace(j, f.base, f.recs); err != nil {
			t.Fatalf("flip at %d: replace: %v", pos, err)
		}
		if d := j.Damaged(); len(d) != 0 {
			t.Fatalf("flip at %d: still damaged after the repair: %+v", pos, d)
		}
		if refused := f.checkReads(t, j); len(refused) != 0 {
			t.Fatalf("flip at %d: after the repair %d offsets refused", pos, len(refused))
		}
		if err := j.Verify(); err != nil {
			t.Fatalf("flip at %d: Verify after the repair: %v", pos, err)
		}
		j.Close()
		if got, _ := os.ReadFile(f.victim); !bytes.Equal(got, f.orig) {
			t.Fatalf("flip at %d: the repaired file differs from the original", pos)
		}
	}
	j := open(t, f.dir, sealedOpts)
	defer j.Close()
	readAll(t, j, 0)
	if err := j.Verify(); err != nil {
		t.Fatal(err)
	}
}

// journalLike builds, in a new directory, a journal with the layout of the
// fixture's, each batch changed by change, and returns its records of the
// victim's offsets.
func (f *sealedFixture) journalLike(t *testing.T, raftBase uint64, change func(*journal.Batch)) [][]byte {
	t.Helper()
	j := open(t, t.TempDir(), sealedOpts)
	defer j.Close()
	idx := raftBase
	for j.NextOffset() < f.total {
		idx++
		b := batchAt(j.NextOffset(), min(3, int(f.total-j.NextOffset())), 30, idx)
		if change != nil {
			change(&b)
		}
		if _, err := j.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return records(t, j, f.base, f.next)
}

// TestBadReplacementRefused offers wrong records for a damaged segment:
// each is refused with ErrBadReplacement and changes nothing.
func TestBadReplacementRefused(t *testing.T) {
	f := newSealedFixture(t)
	// Damage in the first record: a repair is wanted, and every later
	// record of the segment is intact to compare with.
	damaged := bytes.Clone(f.orig)
	damaged[60] ^= 0x04
	if err := os.WriteFile(f.victim, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	j := open(t, f.dir, sealedOpts)
	defer j.Close()
	if err := j.Scrub(context.Background(), f.base, nil); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Scrub: %v", err)
	}
	segs := j.Segments()
	after := records(t, j, segs[2].BaseOffset, segs[2].NextOffset)
	flipped := func(recs [][]byte, k, at int) [][]byte {
		out := make([][]byte, len(recs))
		for i := range recs {
			out[i] = bytes.Clone(recs[i])
		}
		out[k][at] ^= 0x01
		return out
	}
	tests := []struct {
		name string
		recs [][]byte
	}{
		{"other offsets", after},
		{"bad checksum in the damaged record", flipped(f.recs, 0, 60)},
		{"bad checksum in a later record", flipped(f.recs, len(f.recs)-1, 50)},
		{"changed header field", flipped(f.recs, 1, 40)},
		{"raft indexes above the next segment's", f.journalLike(t, 1000, nil)},
		{"diverged payloads", f.journalLike(t, 0, func(b *journal.Batch) {
			for i := range b.Messages {
				b.Messages[i].Payload = bytes.ToUpper(b.Messages[i].Payload)
			}
		})},
		{"last record missing", f.recs[:len(f.recs)-1]},
		{"first record missing", f.recs[1:]},
		{"a record twice", append(append([][]byte{}, f.recs...), f.recs[len(f.recs)-1])},
		{"a record of the next segment added", append(append([][]byte{}, f.recs...), after[0])},
		{"two records glued", append([][]byte{append(bytes.Clone(f.recs[0]), f.recs[1]...)}, f.recs[2:]...)},
		{"nothing", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := replace(j, f.base, tc.recs); !errors.Is(err, journal.ErrBadReplacement) {
				t.Fatalf("replace: %v, want ErrBadReplacement", err)
			}
			if got, _ := os.ReadFile(f.victim); !bytes.Equal(got, damaged) {
				t.Fatal("the segment file changed")
			}
			if left, _ := filepath.Glob(filepath.Join(f.dir, "*.repair")); len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			if d := j.Damaged(); len(d) != 1 || d[0].BaseOffset != f.base {
				t.Fatalf("Damaged() = %+v", d)
			}
			if _, err := j.Read(f.base, 1, 0); !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("Read of the damaged record: %v", err)
			}
		})
	}
	// The tail and unknown segments cannot be replaced.
	if _, err := j.BeginReplace(segs[len(segs)-1].BaseOffset); !errors.Is(err, journal.ErrNotSealed) {
		t.Errorf("BeginReplace of the tail: %v", err)
	}
	if _, err := j.BeginReplace(f.base + 1); !errors.Is(err, journal.ErrNoSegment) {
		t.Errorf("BeginReplace mid-segment: %v", err)
	}
	// And the true records still repair it.
	if err := replace(j, f.base, f.recs); err != nil {
		t.Fatal(err)
	}
	readAll(t, j, 0)
}

// TestRepairLeftoversRemoved: a crash in the middle of a repair leaves
// temporary files, which Open removes; the segment is as before.
func TestRepairLeftoversRemoved(t *testing.T) {
	f := newSealedFixture(t)
	for _, n := range []string{f.victim + ".repair", f.victim[:len(f.victim)-4] + ".idx.repair"} {
		if err := os.WriteFile(n, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := open(t, f.dir, sealedOpts)
	defer j.Close()
	if left, _ := filepath.Glob(filepath.Join(f.dir, "*.repair")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	readAll(t, j, 0)
}

// TestReadRecordsNeverShipsDamage: records before the damage are passed
// on, the damaged one never is, and the read ends with the damage.
func TestReadRecordsNeverShipsDamage(t *testing.T) {
	f := newSealedFixture(t)
	starts := recordStarts(f.recs)
	k := len(f.recs) - 2
	for _, tc := range []struct {
		name string
		at   int64
	}{{"header", 1}, {"body", 50}} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(f.orig)
			b[starts[k]+tc.at] ^= 0x80
			if err := os.WriteFile(f.victim, b, 0o644); err != nil {
				t.Fatal(err)
			}
			j := open(t, f.dir, sealedOpts)
			defer j.Close()
			var got [][]byte
			err := j.ReadRecords(context.Background(), 0, f.total, func(rec []byte) error {
				got = append(got, bytes.Clone(rec))
				return nil
			})
			var ce *journal.CorruptionError
			if !errors.As(err, &ce) || ce.Segment != f.victim || ce.Offset != starts[k] {
				t.Fatalf("ReadRecords: %v, want the damage at byte %d of %s", err, starts[k], f.victim)
			}
			for i, rec := range got[len(got)-k:] {
				if !bytes.Equal(rec, f.recs[i]) {
					t.Fatalf("record %d of the segment differs", i)
				}
			}
			if len(j.Damaged()) != 1 {
				t.Fatalf("Damaged() = %+v", j.Damaged())
			}
			// A range that ends before the damage is served whole.
			first, _ := f.offsetsOf(k)
			if recs := records(t, j, f.base, first); len(recs) != k {
				t.Fatalf("ReadRecords before the damage: %d records, want %d", len(recs), k)
			}
		})
	}
	if err := os.WriteFile(f.victim, f.orig, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScrubPaced: the pace function sees every byte, and its error ends
// the scrub.
func TestScrubPaced(t *testing.T) {
	f := newSealedFixture(t)
	j := open(t, f.dir, sealedOpts)
	defer j.Close()
	var n int
	if err := j.Scrub(context.Background(), f.base, func(_ context.Context, k int) error { n += k; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(f.orig) {
		t.Fatalf("paced %d bytes, the segment has %d", n, len(f.orig))
	}
	stop := errors.New("stop")
	if err := j.Scrub(context.Background(), f.base, func(context.Context, int) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Scrub with a failing pace: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Scrub(ctx, f.base, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Scrub with a cancelled context: %v", err)
	}
	if len(j.Damaged()) != 0 {
		t.Fatalf("a whole segment listed damaged: %+v", j.Damaged())
	}
}

// TestReplaceWhileReading swaps a repaired segment in under concurrent
// readers: every read returns true data or the damage, never anything
// else, and once the repair is in every read succeeds.
func TestReplaceWhileReading(t *testing.T) {
	f := newSealedFixture(t)
	b := bytes.Clone(f.orig)
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(f.victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	j := open(t, f.dir, sealedOpts)
	defer j.Close()
	repaired := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := false; !done; {
				select {
				case <-repaired:
					done = true
				default:
				}
				for off := f.base; off < f.next; off++ {
					msgs, err := j.Read(off, 3, 0)
					if err != nil && (done || !errors.Is(err, journal.ErrCorrupt)) {
						t.Errorf("Read(%d): %v", off, err)
						return
					}
					for _, m := range msgs {
						checkMessage(t, m)
					}
				}
			}
		}()
	}
	if err := replace(j, f.base, f.recs); err != nil {
		t.Fatal(err)
	}
	close(repaired)
	wg.Wait()
}
