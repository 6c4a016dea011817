package partition_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

// leaseOpen opens a partition holding n messages of size bytes and a
// group "g" with floor 0.
func leaseOpen(t *testing.T, n, size int) *partition.Partition {
	t.Helper()
	p := open(t, journal.Options{})
	appendN(t, p, n, size)
	if err := p.AddGroup("g", 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantLease(t *testing.T, p *partition.Partition, now time.Time, ackWait time.Duration, maxMsgs, maxBytes int, want []string) {
	t.Helper()
	if got := lease(t, p, "g", now, ackWait, maxMsgs, maxBytes); !slices.Equal(got, want) {
		t.Fatalf("Lease(now=t0+%v, max %d, maxBytes %d) = %v, want %v", now.Sub(t0), maxMsgs, maxBytes, got, want)
	}
}

func TestLeaseNewMessagesInOrder(t *testing.T) {
	p := leaseOpen(t, 10, 0)
	wantLease(t, p, t0, time.Minute, 3, 0, span(0, 3, 1))
	wantLease(t, p, t0, time.Minute, 3, 0, span(3, 6, 1))
	wantLease(t, p, t0, time.Minute, 100, 0, span(6, 10, 1))
	wantLease(t, p, t0, time.Minute, 100, 0, []string{})
	if n := p.Leased("g"); n != 10 {
		t.Fatalf("Leased = %d, want 10", n)
	}
	appendN(t, p, 2, 0)
	wantLease(t, p, t0, time.Minute, 100, 0, span(10, 12, 1))
	wantLease(t, p, t0, time.Minute, 0, 0, []string{})
}

func TestLeaseByteLimit(t *testing.T) {
	p := leaseOpen(t, 10, 100)
	wantLease(t, p, t0, time.Minute, 10, 250, span(0, 2, 1))
	wantLease(t, p, t0, time.Minute, 10, 250, span(2, 4, 1))
	wantLease(t, p, t0, time.Minute, 10, 50, span(4, 5, 1)) // at least one
	wantLease(t, p, t0, time.Minute, 100, 0, span(5, 10, 1))
	if n := p.Leased("g"); n != 10 {
		t.Fatalf("Leased = %d, want 10", n)
	}
	// Expired leases cut by the byte limit keep their delivery count.
	later := t0.Add(time.Minute)
	wantLease(t, p, later, time.Minute, 10, 350, span(0, 3, 2))
	wantLease(t, p, later, time.Minute, 10, 350, span(3, 6, 2))
	wantLease(t, p, later, time.Minute, 10, 0, span(6, 10, 2))
	if n := p.Leased("g"); n != 10 {
		t.Fatalf("Leased = %d, want 10", n)
	}
}

func TestLeaseRedelivery(t *testing.T) {
	p := leaseOpen(t, 10, 0)
	wantLease(t, p, t0, 10*time.Second, 3, 0, span(0, 3, 1))
	wantLease(t, p, t0.Add(5*time.Second), 10*time.Second, 2, 0, span(3, 5, 1))
	wantLease(t, p, t0.Add(9*time.Second), 10*time.Second, 0, 0, []string{})
	// At the deadline 0..2 are expired; 3, 4 are not. Expired leases come
	// before new messages.
	wantLease(t, p, t0.Add(10*time.Second), 10*time.Second, 5, 0, cat(span(0, 3, 2), span(5, 7, 1)))
	wantLease(t, p, t0.Add(15*time.Second), 10*time.Second, 100, 0, cat(span(3, 5, 2), span(7, 10, 1)))
	wantLease(t, p, t0.Add(19*time.Second), 10*time.Second, 100, 0, []string{})
	wantLease(t, p, t0.Add(20*time.Second), 10*time.Second, 100, 0, cat(span(0, 3, 3), span(5, 7, 2)))
	if n := p.Leased("g"); n != 10 {
		t.Fatalf("Leased = %d, want 10", n)
	}
}

func TestLeaseExpiredInOffsetOrder(t *testing.T) {
	p := leaseOpen(t, 10, 0)
	// Offsets 0..2 expire after 3..5: deadline order is not offset order.
	wantLease(t, p, t0, 30*time.Second, 3, 0, span(0, 3, 1))
	wantLease(t, p, t0, 10*time.Second, 3, 0, span(3, 6, 1))
	wantLease(t, p, t0.Add(time.Minute), time.Minute, 4, 0, span(0, 4, 2))
	wantLease(t, p, t0.Add(time.Minute), time.Minute, 4, 0, cat(span(4, 6, 2), span(6, 8, 1)))
}

func TestRelease(t *testing.T) {
	p := leaseOpen(t, 10, 0)
	wantLease(t, p, t0, 10*time.Second, 5, 0, span(0, 5, 1))
	if err := p.Release("g", []uint64{1, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Settle("g", []uint64{1}); err != nil {
		t.Fatal(err)
	}
	// 3 is released but its settle is not committed: still not redelivered.
	wantLease(t, p, t0.Add(time.Minute), 10*time.Second, 3, 0, []string{"0/2", "2/2", "4/2"})
	if n := p.Leased("g"); n != 3 {
		t.Fatalf("Leased = %d, want 3", n)
	}
	// An expired lease not handed out again may still be released.
	wantLease(t, p, t0.Add(time.Minute), 10*time.Second, 2, 0, span(5, 7, 1))
	if err := p.Release("g", []uint64{5}); err != nil {
		t.Fatalf("Release of an expired lease: %v", err)
	}
	wantLease(t, p, t0.Add(2*time.Minute), 10*time.Second, 100, 0, cat([]string{"0/3", "2/3", "4/3", "6/2"}, span(7, 10, 1)))
	// A new leader hands 3 and 5 out again: their settle never committed.
	p.ResetLeases()
	wantLease(t, p, t0.Add(2*time.Minute), 10*time.Second, 100, 0, cat([]string{"0/1"}, span(2, 10, 1)))
}

func TestNack(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		steps []struct {
			at   time.Duration
			want []string
		}
	}{
		{"at once", 0, []struct {
			at   time.Duration
			want []string
		}{
			{0, cat([]string{"1/2", "3/2"}, span(5, 7, 1))},
		}},
		{"after a delay", 5 * time.Second, []struct {
			at   time.Duration
			want []string
		}{
			{4 * time.Second, span(5, 9, 1)},
			{5 * time.Second, []string{"1/2", "3/2", "9/1"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := leaseOpen(t, 10, 0)
			wantLease(t, p, t0, time.Hour, 5, 0, span(0, 5, 1))
			if err := p.Nack("g", []uint64{3, 1}, t0, tc.delay); err != nil {
				t.Fatal(err)
			}
			if n := p.Leased("g"); n != 5 {
				t.Fatalf("Leased after Nack = %d, want 5", n)
			}
			for _, s := range tc.steps {
				wantLease(t, p, t0.Add(s.at), time.Hour, 4, 0, s.want)
			}
		})
	}
}

func TestNotPendingChangesNothing(t *testing.T) {
	tests := []struct {
		name    string
		offsets []uint64
	}{
		{"never delivered", []uint64{7}},
		{"past the watermark", []uint64{100}},
		{"settled", []uint64{2}},
		{"released", []uint64{1}},
		{"one bad among good", []uint64{0, 3, 7, 4}},
		{"bad then good", []uint64{2, 0}},
	}
	ops := []struct {
		name string
		call func(p *partition.Partition, offsets []uint64) error
	}{
		{"Release", func(p *partition.Partition, o []uint64) error { return p.Release("g", o) }},
		{"Nack", func(p *partition.Partition, o []uint64) error { return p.Nack("g", o, t0, 0) }},
	}
	for _, op := range ops {
		for _, tc := range tests {
			t.Run(op.name+"/"+tc.name, func(t *testing.T) {
				p := leaseOpen(t, 10, 0)
				wantLease(t, p, t0, time.Hour, 5, 0, span(0, 5, 1))
				if err := p.Release("g", []uint64{1}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Settle("g", []uint64{1, 2}); err != nil {
					t.Fatal(err)
				}
				if err := op.call(p, tc.offsets); !errors.Is(err, partition.ErrNotPending) {
					t.Fatalf("%s(%v): %v, want ErrNotPending", op.name, tc.offsets, err)
				}
				// Nothing changed: 0, 3, 4 are still leased and not
				// available, and the cursor is at 5.
				if n := p.Leased("g"); n != 3 {
					t.Fatalf("Leased = %d, want 3", n)
				}
				wantLease(t, p, t0, time.Hour, 100, 0, span(5, 10, 1))
				if err := p.Release("g", []uint64{0, 3, 4}); err != nil {
					t.Fatalf("Release of the leases left: %v", err)
				}
			})
		}
	}
}

func TestResetLeases(t *testing.T) {
	p := leaseOpen(t, 10, 0)
	if err := p.AddGroup("h", 4); err != nil {
		t.Fatal(err)
	}
	wantLease(t, p, t0, time.Second, 10, 0, span(0, 10, 1))
	wantLease(t, p, t0.Add(time.Second), time.Second, 10, 0, span(0, 10, 2))
	if _, err := p.Settle("g", []uint64{0, 1, 2, 5, 8}); err != nil {
		t.Fatal(err)
	}
	if err := p.Release("g", []uint64{3}); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, p, "h", t0, time.Hour, 3, 0); !slices.Equal(got, span(4, 7, 1)) {
		t.Fatalf("group h: Lease = %v", got)
	}
	p.ResetLeases()
	if n, m := p.Leased("g"), p.Leased("h"); n != 0 || m != 0 {
		t.Fatalf("Leased after ResetLeases = %d, %d", n, m)
	}
	// Every unsettled offset at or above the floor, settled ones skipped,
	// Deliveries from 1 again.
	wantLease(t, p, t0, time.Hour, 100, 0, []string{"3/1", "4/1", "6/1", "7/1", "9/1"})
	if got := lease(t, p, "h", t0, time.Hour, 100, 0); !slices.Equal(got, span(4, 10, 1)) {
		t.Fatalf("group h after ResetLeases: Lease = %v", got)
	}
}

// TestLeaseConcurrentConsumers runs consumers of one group in parallel,
// some with a byte limit so that what they reserved is given back while
// others advance the cursor, and checks that every offset is handed out
// exactly once.
func TestLeaseConcurrentConsumers(t *testing.T) {
	const total, consumers = 6000, 6
	p := open(t, journal.Options{})
	for range total / 1000 {
		appendN(t, p, 1000, 50)
	}
	if err := p.AddGroup("g", 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := make(map[uint64]int, total)
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			maxBytes := 0
			if c%2 == 1 {
				maxBytes = 50 * (c + 1)
			}
			for {
				ds, err := p.Lease("g", t0, time.Hour, 17+c, maxBytes)
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					if n, _ := p.Pending("g"); n == uint64(p.Leased("g")) {
						// Everything left is leased by others.
						if n == 0 {
							return
						}
					}
					time.Sleep(100 * time.Microsecond)
					continue
				}
				offs := make([]uint64, len(ds))
				mu.Lock()
				for i, d := range ds {
					offs[i] = d.Offset
					seen[d.Offset]++
					if d.Deliveries != 1 {
						errs <- fmt.Errorf("offset %d: Deliveries %d", d.Offset, d.Deliveries)
					}
				}
				mu.Unlock()
				if err := p.Release("g", offs); err != nil {
					errs <- err
					return
				}
				if _, err := p.Settle("g", offs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for o := range uint64(total) {
		if seen[o] != 1 {
			t.Fatalf("offset %d handed out %d times", o, seen[o])
		}
	}
	if floor, settled, _ := p.GroupState("g"); floor != total || settled != nil {
		t.Fatalf("state (%d, %v), want (%d, [])", floor, settled, total)
	}
}
