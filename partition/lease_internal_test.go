package partition

import (
	"slices"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
)

// These tests interleave the three steps of Lease (reserve under the lock,
// fetch without it, commit under it) with other calls, which concurrent
// callers can do but a test cannot time from outside.

var tBase = time.Unix(2_000_000, 0)

func openInternal(t *testing.T, n, size int, opts journal.Options) (*Partition, *group) {
	t.Helper()
	p, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for i := 0; i < n; i += 10 {
		msgs := make([]journal.Message, min(10, n-i))
		for k := range msgs {
			msgs[k].Payload = make([]byte, size)
		}
		if _, err := p.Append(journal.Batch{RaftIndex: uint64(i/10 + 1), Timestamp: tBase.UnixNano(), Messages: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.AddGroup("g", 0); err != nil {
		t.Fatal(err)
	}
	return p, p.groups["g"]
}

func (p *Partition) testReserve(g *group, now time.Time, ackWait time.Duration, n int) *reservation {
	first, wm := p.j.FirstOffset(), p.wm.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	return g.reserve(now.UnixNano(), now.Add(ackWait).UnixNano(), first, wm, n)
}

func (p *Partition) testCommit(g *group, r *reservation, f fetched) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for _, d := range g.commit(r, f) {
		out = append(out, d.Offset)
	}
	return out
}

func leaseOffsets(t *testing.T, p *Partition, now time.Time, n int) []uint64 {
	t.Helper()
	ds, err := p.Lease("g", now, time.Hour, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, d := range ds {
		out = append(out, d.Offset)
	}
	return out
}

func seq(lo, hi uint64) []uint64 {
	var out []uint64
	for o := lo; o < hi; o++ {
		out = append(out, o)
	}
	return out
}

func TestGiveBackBelowCursorMakesGap(t *testing.T) {
	p, g := openInternal(t, 20, 10, journal.Options{})
	ra := p.testReserve(g, tBase, time.Hour, 5) // [0, 5)
	rb := p.testReserve(g, tBase, time.Hour, 3) // [5, 8)
	fa := p.fetch(ra, 15)                       // byte limit: only 0
	fb := p.fetch(rb, 0)
	if got := p.testCommit(g, ra, fa); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("first commit handed out %v, want [0]", got)
	}
	if got := p.testCommit(g, rb, fb); !slices.Equal(got, seq(5, 8)) {
		t.Fatalf("second commit handed out %v, want [5 6 7]", got)
	}
	if !slices.Equal(g.leases.gaps, []span{{1, 5}}) || g.leases.cursor != 8 {
		t.Fatalf("gaps %v cursor %d, want [{1 5}] and 8", g.leases.gaps, g.leases.cursor)
	}
	// The gap is served before the cursor, part of it now, the rest next.
	if got := leaseOffsets(t, p, tBase, 2); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("Lease = %v, want [1 2]", got)
	}
	if got := leaseOffsets(t, p, tBase, 4); !slices.Equal(got, []uint64{3, 4, 8, 9}) {
		t.Fatalf("Lease = %v, want [3 4 8 9]", got)
	}
	if len(g.leases.gaps) != 0 {
		t.Fatalf("gaps left: %v", g.leases.gaps)
	}
}

func TestGiveBackAtCursorRollsBack(t *testing.T) {
	p, g := openInternal(t, 20, 10, journal.Options{})
	ra := p.testReserve(g, tBase, time.Hour, 5) // [0, 5)
	rb := p.testReserve(g, tBase, time.Hour, 3) // [5, 8)
	fa := p.fetch(ra, 15)
	fb := p.fetch(rb, 15)
	// b hands out 5 and gives back [6, 8), which ends at the cursor: the
	// cursor rolls back to 6. a then gives back [1, 5), which does not end
	// at the cursor: it becomes a gap.
	if got := p.testCommit(g, rb, fb); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("commit b handed out %v", got)
	}
	if g.leases.cursor != 6 {
		t.Fatalf("cursor %d after giving back [6, 8), want 6", g.leases.cursor)
	}
	if got := p.testCommit(g, ra, fa); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("commit a handed out %v", got)
	}
	if got := leaseOffsets(t, p, tBase, 100); !slices.Equal(got, append(seq(1, 5), seq(6, 20)...)) {
		t.Fatalf("Lease = %v", got)
	}
}

func TestResetVoidsReservation(t *testing.T) {
	tests := []struct {
		name  string
		reset func(p *Partition)
		want  []uint64 // what a Lease after the commit hands out
	}{
		{"ResetLeases", func(p *Partition) { p.ResetLeases() }, seq(0, 10)},
		{"ResetGroup", func(p *Partition) { p.ResetGroup("g", 4) }, seq(4, 10)},
		{"SetGroupState", func(p *Partition) { p.SetGroupState("g", 2, []uint64{3}) }, append([]uint64{2}, seq(4, 10)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, g := openInternal(t, 10, 10, journal.Options{})
			if got := leaseOffsets(t, p, tBase, 3); !slices.Equal(got, seq(0, 3)) {
				t.Fatalf("Lease = %v", got)
			}
			// Redeliveries of 0..2 and new 3..5 in flight when the reset
			// comes: none of them may be handed out or leased.
			r := p.testReserve(g, tBase.Add(2*time.Hour), time.Hour, 6)
			f := p.fetch(r, 0)
			tc.reset(p)
			if got := p.testCommit(g, r, f); len(got) != 0 {
				t.Fatalf("commit after %s handed out %v", tc.name, got)
			}
			if n := p.Leased("g"); n != 0 {
				t.Fatalf("Leased = %d after the commit, want 0", n)
			}
			if got := leaseOffsets(t, p, tBase, 100); !slices.Equal(got, tc.want) {
				t.Fatalf("Lease = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestChangesWhileInFlight(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, p *Partition)
		want   []uint64 // handed out by the commit
		leased int
	}{
		{"nothing", func(*testing.T, *Partition) {}, seq(0, 6), 6},
		{"settled", func(t *testing.T, p *Partition) {
			if _, err := p.Settle("g", []uint64{1, 4}); err != nil {
				t.Fatal(err)
			}
		}, []uint64{0, 2, 3, 5}, 4},
		{"late release of an expired lease", func(t *testing.T, p *Partition) {
			if err := p.Release("g", []uint64{2}); err != nil {
				t.Fatal(err)
			}
		}, []uint64{0, 1, 3, 4, 5}, 5},
		{"nacked", func(t *testing.T, p *Partition) {
			if err := p.Nack("g", []uint64{0}, tBase, 0); err != nil {
				t.Fatal(err)
			}
		}, seq(1, 6), 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, g := openInternal(t, 10, 10, journal.Options{})
			leaseOffsets(t, p, tBase, 3)
			r := p.testReserve(g, tBase.Add(2*time.Hour), time.Hour, 6) // redo 0..2, new 3..5
			f := p.fetch(r, 0)
			tc.change(t, p)
			if got := p.testCommit(g, r, f); !slices.Equal(got, tc.want) {
				t.Fatalf("commit handed out %v, want %v", got, tc.want)
			}
			if n := p.Leased("g"); n != tc.leased {
				t.Fatalf("Leased = %d, want %d", n, tc.leased)
			}
		})
	}
}

func TestRetentionWhileInFlight(t *testing.T) {
	// 10 messages of 100 bytes per batch; 2 KiB segments hold one batch.
	p, g := openInternal(t, 40, 100, journal.Options{SegmentBytes: 2 << 10})
	r := p.testReserve(g, tBase, time.Hour, 25)
	if n, err := p.DeleteBefore(20); err != nil || n != 2 {
		t.Fatalf("DeleteBefore(20) = %d, %v; want 2 segments", n, err)
	}
	f := p.fetch(r, 0)
	if f.err != nil {
		t.Fatal(f.err)
	}
	if got := p.testCommit(g, r, f); !slices.Equal(got, seq(20, 25)) {
		t.Fatalf("commit handed out %v, want 20..24", got)
	}
	if got := leaseOffsets(t, p, tBase, 100); !slices.Equal(got, seq(25, 40)) {
		t.Fatalf("Lease = %v, want 25..39", got)
	}
}

func TestHeapsStayBounded(t *testing.T) {
	const n = 4000
	p, g := openInternal(t, n, 1, journal.Options{})
	// A lease held throughout, with the earliest deadline, stays at the
	// top of the timers: stale entries behind it are not popped lazily.
	if got := leaseOffsets(t, p, tBase, 1); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("Lease = %v", got)
	}
	worst := 0
	for i := 1; i < n; i++ {
		now := tBase.Add(time.Duration(i) * time.Millisecond)
		ds, err := p.Lease("g", now, 2*time.Hour, 1, 0)
		if err != nil || len(ds) != 1 {
			t.Fatalf("Lease: %v, %v", ds, err)
		}
		// Every other lease is nacked with a delay, then released, so
		// stale entries pile up in both heaps.
		o := []uint64{ds[0].Offset}
		if i%2 == 0 {
			if err := p.Nack("g", o, now, 3*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Release("g", o); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, len(g.leases.timers)+len(g.leases.ready))
	}
	if worst > 2+1024 {
		t.Fatalf("heaps grew to %d entries with one live lease", worst)
	}
	if n := p.Leased("g"); n != 1 {
		t.Fatalf("Leased = %d, want 1", n)
	}
}

func TestSettledSetMatchesModel(t *testing.T) {
	// Mix settle, raise and reset, and check every query against a model.
	var s settledSet
	s.reset(5)
	model := map[uint64]bool{}
	floor := uint64(5)
	check := func(step string) {
		t.Helper()
		for floor < 1000 && model[floor] {
			delete(model, floor)
			floor++
		}
		if s.floor != floor || s.n != uint64(len(model)) {
			t.Fatalf("%s: floor %d n %d, want %d %d", step, s.floor, s.n, floor, len(model))
		}
		for o := uint64(0); o < 700; o++ {
			want := o < floor || model[o]
			if s.has(o) != want {
				t.Fatalf("%s: has(%d) = %v", step, o, !want)
			}
			next := max(o, floor)
			for model[next] {
				next++
			}
			if got := s.nextUnsettled(o); got != next {
				t.Fatalf("%s: nextUnsettled(%d) = %d, want %d", step, o, got, next)
			}
		}
		for _, r := range [][2]uint64{{0, 700}, {floor, floor + 1}, {floor + 3, floor + 200}, {130, 257}} {
			var want uint64
			for o := max(r[0], floor); o < r[1]; o++ {
				if model[o] {
					want++
				}
			}
			if got := s.count(r[0], r[1]); got != want {
				t.Fatalf("%s: count(%d, %d) = %d, want %d", step, r[0], r[1], got, want)
			}
		}
	}
	for _, o := range []uint64{7, 63, 64, 65, 200, 6} {
		s.add(o)
		model[o] = true
		check("add")
	}
	s.add(5)
	model[5] = true
	check("add floor")
	for _, to := range []uint64{60, 64, 66, 150, 201, 400} {
		s.add(to + 1)
		model[to+1] = true
		s.add(to + 70)
		model[to+70] = true
		s.raise(to)
		for o := range model {
			if o < to {
				delete(model, o)
			}
		}
		floor = max(floor, to)
		check("raise")
	}
	s.reset(3)
	clear(model)
	floor = 3
	check("reset")
}
