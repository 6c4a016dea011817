package partition_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

func TestGroups(t *testing.T) {
	p := open(t, journal.Options{})
	appendN(t, p, 10, 0)
	for _, name := range []string{"c", "a", "b"} {
		if err := p.AddGroup(name, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.AddGroup("b", 3); !errors.Is(err, partition.ErrGroupExists) {
		t.Fatalf("AddGroup of an existing group: %v", err)
	}
	if got := p.Groups(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Groups = %v", got)
	}
	if err := p.RemoveGroup("b"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveGroup("b"); !errors.Is(err, partition.ErrUnknownGroup) {
		t.Fatalf("RemoveGroup of a removed group: %v", err)
	}
	if got := p.Groups(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("Groups = %v", got)
	}
}

func TestAddGroupClampsFloor(t *testing.T) {
	tests := []struct {
		name        string
		floor, want uint64
	}{
		{"inside", 4, 4},
		{"at watermark", 10, 10},
		{"past watermark", 1000, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 10, 0)
			if err := p.AddGroup("g", tc.floor); err != nil {
				t.Fatal(err)
			}
			if floor, _, _ := p.GroupState("g"); floor != tc.want {
				t.Fatalf("floor %d, want %d", floor, tc.want)
			}
		})
	}
}

func TestUnknownGroup(t *testing.T) {
	p := open(t, journal.Options{})
	appendN(t, p, 10, 0)
	tests := []struct {
		name string
		call func() error
	}{
		{"Settle", func() error { _, err := p.Settle("x", []uint64{1}); return err }},
		{"ResetGroup", func() error { return p.ResetGroup("x", 0) }},
		{"GroupState", func() error { _, _, err := p.GroupState("x"); return err }},
		{"Pending", func() error { _, err := p.Pending("x"); return err }},
		{"RemoveGroup", func() error { return p.RemoveGroup("x") }},
		{"Lease", func() error { _, err := p.Lease("x", t0, time.Second, 1, 0); return err }},
		{"Release", func() error { return p.Release("x", []uint64{1}) }},
		{"Nack", func() error { return p.Nack("x", []uint64{1}, t0, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, partition.ErrUnknownGroup) {
				t.Fatalf("%s of an unknown group: %v, want ErrUnknownGroup", tc.name, err)
			}
		})
	}
	if n := p.Leased("x"); n != 0 {
		t.Fatalf("Leased of an unknown group: %d", n)
	}
}

func TestSettle(t *testing.T) {
	type step struct {
		offsets     []uint64
		newly       int
		floor       uint64
		settled     []uint64
		wantPending uint64
	}
	tests := []struct {
		name  string
		floor uint64
		steps []step
	}{
		{"in order", 0, []step{
			{[]uint64{0, 1, 2}, 3, 3, nil, 197},
		}},
		{"out of order waits for the floor", 3, []step{
			{[]uint64{5}, 1, 3, []uint64{5}, 196},
			{[]uint64{4}, 1, 3, []uint64{4, 5}, 195},
			{[]uint64{3}, 1, 6, nil, 194},
			{[]uint64{7}, 1, 6, []uint64{7}, 193},
		}},
		{"replay is ignored", 3, []step{
			{[]uint64{5, 6}, 2, 3, []uint64{5, 6}, 195},
			{[]uint64{5, 6}, 0, 3, []uint64{5, 6}, 195},
			{[]uint64{3, 4}, 2, 7, nil, 193},
			{[]uint64{3, 4, 5, 6}, 0, 7, nil, 193},
		}},
		{"duplicates in one call", 0, []step{
			{[]uint64{4, 4, 4}, 1, 0, []uint64{4}, 199},
		}},
		{"below floor ignored", 10, []step{
			{[]uint64{2, 9}, 0, 10, nil, 190},
		}},
		{"at or past watermark ignored", 190, []step{
			{[]uint64{200, 250, 195}, 1, 190, []uint64{195}, 9},
			{[]uint64{199}, 1, 190, []uint64{195, 199}, 8},
		}},
		{"across word boundaries", 60, []step{
			{offsets(61, 130), 69, 60, offsets(61, 130), 71},
			{[]uint64{60}, 1, 130, nil, 70},
		}},
		{"floor lands at a word start", 0, []step{
			{offsets(1, 128), 127, 0, offsets(1, 128), 73},
			{[]uint64{0}, 1, 128, nil, 72},
			{[]uint64{129}, 1, 128, []uint64{129}, 71},
		}},
		{"far ahead of the floor", 0, []step{
			{[]uint64{190}, 1, 0, []uint64{190}, 199},
			{offsets(0, 190), 190, 191, nil, 9},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 200, 0)
			if err := p.AddGroup("g", tc.floor); err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				n, err := p.Settle("g", s.offsets)
				if err != nil {
					t.Fatal(err)
				}
				floor, settled, err := p.GroupState("g")
				if err != nil {
					t.Fatal(err)
				}
				pending, err := p.Pending("g")
				if err != nil {
					t.Fatal(err)
				}
				if n != s.newly || floor != s.floor || !slices.Equal(settled, s.settled) || pending != s.wantPending {
					t.Fatalf("step %d: Settle(%v) = %d, state (%d, %v), pending %d; want %d, (%d, %v), %d",
						i, s.offsets, n, floor, settled, pending, s.newly, s.floor, s.settled, s.wantPending)
				}
			}
		})
	}
}

// TestSettleRandomOrder settles thousands of offsets in random order, in
// random chunks with replays and offsets past the watermark, and checks
// after every chunk that the floor is the smallest unsettled offset and
// that the settled set and Pending match a model.
func TestSettleRandomOrder(t *testing.T) {
	const n = 3000
	for _, seed := range []uint64{1, 2, 3} {
		for _, floor := range []uint64{0, 37, 64} {
			p := open(t, journal.Options{})
			for range n / 500 {
				appendN(t, p, 500, 0)
			}
			if err := p.AddGroup("g", floor); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(seed, floor))
			model := make([]bool, n)
			for o := range floor {
				model[o] = true
			}
			order := offsets(0, n)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for len(order) > 0 {
				k := min(len(order), 1+rng.IntN(40))
				chunk := slices.Clone(order[:k])
				order = order[k:]
				want := 0
				for _, o := range chunk {
					if !model[o] {
						model[o] = true
						want++
					}
				}
				// Replays of offsets settled before, and offsets not yet written.
				extra := uint64(rng.IntN(n))
				if !model[extra] {
					model[extra] = true
					want++
				}
				chunk = append(chunk, extra, n+uint64(rng.IntN(100)))
				got, err := p.Settle("g", chunk)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("seed %d floor %d: Settle(%v) = %d, want %d", seed, floor, chunk, got, want)
				}
				checkModel(t, p, model)
			}
			if f, s, _ := p.GroupState("g"); f != n || s != nil {
				t.Fatalf("everything settled: state (%d, %v), want (%d, [])", f, s, n)
			}
		}
	}
}

func checkModel(t *testing.T, p *partition.Partition, model []bool) {
	t.Helper()
	wantFloor := uint64(slices.Index(model, false))
	if wantFloor == ^uint64(0) {
		wantFloor = uint64(len(model))
	}
	var wantSettled []uint64
	var wantPending uint64
	for o := wantFloor; o < uint64(len(model)); o++ {
		if model[o] {
			wantSettled = append(wantSettled, o)
		} else {
			wantPending++
		}
	}
	floor, settled, err := p.GroupState("g")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := p.Pending("g")
	if err != nil {
		t.Fatal(err)
	}
	if floor != wantFloor || !slices.Equal(settled, wantSettled) || pending != wantPending {
		t.Fatalf("state (%d, %d settled, pending %d), want (%d, %d settled, pending %d)\n got settled  %v\nwant settled %v",
			floor, len(settled), pending, wantFloor, len(wantSettled), wantPending, settled, wantSettled)
	}
}

func TestSetGroupStateRoundTrip(t *testing.T) {
	tests := []struct {
		name         string
		floor        uint64
		settled      []uint64
		wantFloor    uint64
		wantSettled  []uint64
		wantPending  uint64
		existingFrom uint64 // > 0: the group exists before, with this floor
	}{
		{"empty", 5, nil, 5, nil, 295, 0},
		{"sparse", 10, []uint64{12, 70, 200}, 10, []uint64{12, 70, 200}, 287, 0},
		{"unsorted with duplicates", 0, []uint64{64, 1, 63, 1}, 0, []uint64{1, 63, 64}, 297, 0},
		{"contiguous with floor is folded in", 10, []uint64{11, 10, 13}, 12, []uint64{13}, 287, 0},
		{"below floor ignored", 100, []uint64{3, 99, 101}, 100, []uint64{101}, 199, 0},
		{"replaces existing state", 7, []uint64{9}, 7, []uint64{9}, 292, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 300, 0)
			if tc.existingFrom > 0 {
				if err := p.AddGroup("g", tc.existingFrom); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Settle("g", []uint64{tc.existingFrom + 2, 250}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Lease("g", t0, time.Minute, 10, 0); err != nil {
					t.Fatal(err)
				}
			}
			p.SetGroupState("g", tc.floor, tc.settled)
			floor, settled, err := p.GroupState("g")
			if err != nil {
				t.Fatal(err)
			}
			pending, _ := p.Pending("g")
			if floor != tc.wantFloor || !slices.Equal(settled, tc.wantSettled) || pending != tc.wantPending {
				t.Fatalf("state (%d, %v) pending %d, want (%d, %v) pending %d",
					floor, settled, pending, tc.wantFloor, tc.wantSettled, tc.wantPending)
			}
			if n := p.Leased("g"); n != 0 {
				t.Fatalf("%d leases survive SetGroupState", n)
			}
			// Restoring what GroupState returned gives the same state.
			q := open(t, journal.Options{})
			appendN(t, q, 300, 0)
			q.SetGroupState("g", floor, settled)
			f2, s2, _ := q.GroupState("g")
			p2, _ := q.Pending("g")
			if f2 != floor || !slices.Equal(s2, settled) || p2 != pending {
				t.Fatalf("round trip: (%d, %v) pending %d, want (%d, %v) pending %d", f2, s2, p2, floor, settled, pending)
			}
		})
	}
}

func TestResetGroup(t *testing.T) {
	tests := []struct {
		name      string
		floor     uint64
		wantFloor uint64
		wantLease []string
	}{
		{"back", 2, 2, span(2, 10, 1)},
		{"forward", 8, 8, span(8, 10, 1)},
		{"past watermark", 1000, 10, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 10, 0)
			if err := p.AddGroup("g", 0); err != nil {
				t.Fatal(err)
			}
			lease(t, p, "g", t0, time.Minute, 6, 0)
			if _, err := p.Settle("g", []uint64{0, 1, 2, 3, 5}); err != nil {
				t.Fatal(err)
			}
			if err := p.ResetGroup("g", tc.floor); err != nil {
				t.Fatal(err)
			}
			floor, settled, _ := p.GroupState("g")
			if floor != tc.wantFloor || settled != nil {
				t.Fatalf("state (%d, %v), want (%d, [])", floor, settled, tc.wantFloor)
			}
			if n := p.Leased("g"); n != 0 {
				t.Fatalf("%d leases survive ResetGroup", n)
			}
			if got := lease(t, p, "g", t0, time.Minute, 100, 0); !slices.Equal(got, tc.wantLease) {
				t.Fatalf("Lease after ResetGroup = %v, want %v", got, tc.wantLease)
			}
		})
	}
}

func TestDeleteBeforeRaisesFloors(t *testing.T) {
	// 100-byte messages, 10 per batch: a batch record is a little over
	// 1 KiB, so 4 KiB segments hold 3 batches, starting at 0, 30, 60, 90.
	p := open(t, journal.Options{SegmentBytes: 4 << 10})
	for range 12 {
		appendN(t, p, 10, 100)
	}
	bases := []uint64{}
	for _, s := range p.Journal().Segments() {
		bases = append(bases, s.BaseOffset)
	}
	if !slices.Equal(bases, []uint64{0, 30, 60, 90}) {
		t.Fatalf("segments start at %v; the test expects 0, 30, 60, 90", bases)
	}
	groups := []struct {
		name        string
		floor       uint64
		settle      []uint64
		wantFloor   uint64
		wantSettled []uint64
		wantLeased  int
	}{
		{"behind", 0, nil, 60, nil, 0},
		{"settled across the cut", 10, []uint64{20, 59, 60, 61, 70}, 62, []uint64{70}, 0},
		{"settled above the cut", 5, []uint64{64}, 60, []uint64{64}, 0},
		{"ahead", 75, []uint64{80}, 75, []uint64{80}, 10},
	}
	for _, g := range groups {
		if err := p.AddGroup(g.name, g.floor); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Settle(g.name, g.settle); err != nil {
			t.Fatal(err)
		}
		lease(t, p, g.name, t0, time.Minute, 10, 0)
	}
	n, err := p.DeleteBefore(65)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || p.Journal().FirstOffset() != 60 {
		t.Fatalf("DeleteBefore(65) deleted %d segments, first offset %d; want 2, 60", n, p.Journal().FirstOffset())
	}
	for _, g := range groups {
		floor, settled, _ := p.GroupState(g.name)
		if floor != g.wantFloor || !slices.Equal(settled, g.wantSettled) {
			t.Errorf("group %q: state (%d, %v), want (%d, %v)", g.name, floor, settled, g.wantFloor, g.wantSettled)
		}
		if n := p.Leased(g.name); n != g.wantLeased {
			t.Errorf("group %q: %d leases, want %d", g.name, n, g.wantLeased)
		}
	}
	// A group whose leases were dropped is served from the new floor.
	if got, want := lease(t, p, "behind", t0, time.Minute, 3, 0), span(60, 63, 1); !slices.Equal(got, want) {
		t.Fatalf("Lease after DeleteBefore = %v, want %v", got, want)
	}
}
