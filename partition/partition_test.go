package partition_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

func TestAppendMovesWatermark(t *testing.T) {
	p := open(t, journal.Options{})
	if wm := p.Watermark(); wm != 0 {
		t.Fatalf("new partition: watermark %d, want 0", wm)
	}
	appendN(t, p, 3, 0)
	appendN(t, p, 4, 0)
	if wm := p.Watermark(); wm != 7 {
		t.Fatalf("watermark %d, want 7", wm)
	}
}

func TestAppendErrorsPassThrough(t *testing.T) {
	tests := []struct {
		name  string
		batch func(j *journal.Journal) journal.Batch
		want  error
	}{
		{"stale raft index", func(j *journal.Journal) journal.Batch {
			b := batch(j, 2, 0)
			b.RaftIndex = j.LastRaftIndex()
			return b
		}, journal.ErrStaleIndex},
		{"empty batch", func(j *journal.Journal) journal.Batch {
			return journal.Batch{RaftIndex: j.LastRaftIndex() + 1}
		}, journal.ErrEmptyBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 5, 0)
			if _, err := p.Append(tc.batch(p.Journal())); !errors.Is(err, tc.want) {
				t.Fatalf("Append: %v, want %v", err, tc.want)
			}
			if wm := p.Watermark(); wm != 5 {
				t.Fatalf("watermark %d after a failed append, want 5", wm)
			}
		})
	}
}

func TestOpenStartsAtJournalEnd(t *testing.T) {
	dir := t.TempDir()
	p, err := partition.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, p, 9, 0)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = partition.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if wm := p.Watermark(); wm != 9 {
		t.Fatalf("reopened watermark %d, want 9", wm)
	}
	if g := p.Groups(); len(g) != 0 {
		t.Fatalf("reopened partition has groups %v", g)
	}
}

func TestReadStopsAtWatermark(t *testing.T) {
	p := open(t, journal.Options{})
	appendN(t, p, 10, 0)
	// Messages written to the journal directly are not committed: the
	// watermark stays at 10.
	if _, err := p.Journal().Append(batch(p.Journal(), 5, 0)); err != nil {
		t.Fatal(err)
	}
	if wm, next := p.Watermark(), p.Journal().NextOffset(); wm != 10 || next != 15 {
		t.Fatalf("watermark %d, journal next %d; want 10, 15", wm, next)
	}
	tests := []struct {
		name              string
		from              uint64
		maxMsgs, maxBytes int
		want              []uint64
	}{
		{"all", 0, 100, 0, offsets(0, 10)},
		{"tail", 8, 100, 0, offsets(8, 10)},
		{"at watermark", 10, 100, 0, nil},
		{"past watermark", 12, 100, 0, nil},
		{"count limit", 3, 2, 0, offsets(3, 5)},
		{"byte limit", 0, 100, 3, offsets(0, 3)},
		{"no messages asked", 0, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := p.Read(tc.from, tc.maxMsgs, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, m := range msgs {
				checkPayload(t, m)
				got = append(got, m.Offset)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Read(%d, %d, %d) = %v, want %v", tc.from, tc.maxMsgs, tc.maxBytes, got, tc.want)
			}
		})
	}
	if err := p.AddGroup("g", 0); err != nil {
		t.Fatal(err)
	}
	if got, want := lease(t, p, "g", t0, time.Minute, 100, 0), span(0, 10, 1); !slices.Equal(got, want) {
		t.Fatalf("Lease = %v, want %v", got, want)
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name    string
		after   uint64
		timeout time.Duration
		act     func(t *testing.T, p *partition.Partition)
		want    error
	}{
		{"append wakes", 5, 10 * time.Second, func(t *testing.T, p *partition.Partition) { appendN(t, p, 1, 0) }, nil},
		{"already past", 4, 10 * time.Second, func(*testing.T, *partition.Partition) {}, nil},
		{"timeout", 5, 20 * time.Millisecond, func(*testing.T, *partition.Partition) {}, context.DeadlineExceeded},
		{"close", 5, 10 * time.Second, func(t *testing.T, p *partition.Partition) {
			if err := p.Close(); err != nil {
				t.Error(err)
			}
		}, partition.ErrClosed},
		{"append not past after", 10, 50 * time.Millisecond, func(t *testing.T, p *partition.Partition) { appendN(t, p, 1, 0) }, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t, journal.Options{})
			appendN(t, p, 5, 0)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Wait(ctx, tc.after) }()
			time.Sleep(5 * time.Millisecond)
			tc.act(t, p)
			if err := <-done; !errors.Is(err, tc.want) {
				t.Fatalf("Wait: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWaitersWokenRepeatedly(t *testing.T) {
	p := open(t, journal.Options{})
	const waiters, rounds = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for after := range uint64(rounds) {
				if err := p.Wait(context.Background(), after); err != nil {
					errs <- err
					return
				}
				if wm := p.Watermark(); wm <= after {
					errs <- errors.New("Wait returned before the watermark passed")
					return
				}
			}
		}()
	}
	for range rounds {
		appendN(t, p, 1, 0)
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestCloseWakesWaiters(t *testing.T) {
	p := open(t, journal.Options{})
	appendN(t, p, 2, 0)
	if err := p.AddGroup("g", 0); err != nil {
		t.Fatal(err)
	}
	const waiters = 8
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- p.Wait(context.Background(), 5) }()
	}
	time.Sleep(10 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for range waiters {
		if err := <-errs; !errors.Is(err, partition.ErrClosed) {
			t.Fatalf("waiter got %v, want ErrClosed", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := p.Append(batch(p.Journal(), 1, 0))
	if !errors.Is(err, partition.ErrClosed) || !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Append after Close: %v, want partition.ErrClosed and journal.ErrClosed", err)
	}
	if _, err := p.Read(0, 10, 0); !errors.Is(err, partition.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := p.Lease("g", t0, time.Second, 10, 0); !errors.Is(err, partition.ErrClosed) {
		t.Fatalf("Lease after Close: %v", err)
	}
	if err := p.Wait(context.Background(), 0); !errors.Is(err, partition.ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
}
