package cluster

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gatedStore is an in-memory log store whose writes wait for the test.
type gatedStore struct {
	*raft.InmemStore
	gate   chan struct{} // a receive per StoreLogs call when non-nil
	fail   atomic.Bool
	writes atomic.Int32
}

func (s *gatedStore) StoreLogs(logs []*raft.Log) error {
	if s.gate != nil {
		<-s.gate
	}
	s.writes.Add(1)
	if s.fail.Load() {
		return errors.New("disk on fire")
	}
	return s.InmemStore.StoreLogs(logs)
}

func (s *gatedStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// returns reports whether f returns within a short while.
func returns(f func()) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

// gatedWriteBehind is a writeBehind over a gatedStore whose writes must not
// fail; at the end of the test the gate opens and the log must close
// cleanly.
func gatedWriteBehind(t *testing.T, async func() bool) (*gatedStore, *writeBehind) {
	st := &gatedStore{InmemStore: raft.NewInmemStore(), gate: make(chan struct{})}
	w := newWriteBehind(st, async, func(error) { t.Error("unexpected failure") })
	t.Cleanup(func() {
		close(st.gate)
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return st, w
}

func TestWriteBehindLeader(t *testing.T) {
	var leading atomic.Bool
	leading.Store(true)
	st, w := gatedWriteBehind(t, leading.Load)

	// A leader's command entries return before they are written, and read
	// back from memory meanwhile.
	if err := w.StoreLogs([]*raft.Log{entry(1, 10), entry(2, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{entry(3, 10)}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := w.GetLog(3, &l); err != nil || l.Index != 3 {
		t.Fatalf("GetLog(3) = %+v, %v", l, err)
	}
	if last, _ := w.LastIndex(); last != 3 {
		t.Fatalf("LastIndex = %d, want 3", last)
	}
	if first, _ := w.FirstIndex(); first != 1 {
		t.Fatalf("FirstIndex = %d, want 1", first)
	}
	if d := w.durable(); d != 0 {
		t.Fatalf("durable = %d with 1-3 queued, want 0", d)
	}
	if returns(func() { w.waitDurable(1) }) {
		t.Fatal("waitDurable(1) returned before entry 1 was written")
	}

	// The first write (1-2, or 1-3 if the writer took both calls) lands.
	st.gate <- struct{}{}
	if err := w.waitDurable(2); err != nil {
		t.Fatal(err)
	}
	if st.writes.Load() == 1 {
		if last, _ := st.LastIndex(); last == 2 {
			if d := w.durable(); d != 2 {
				t.Fatalf("durable = %d with 3 queued, want 2", d)
			}
			st.gate <- struct{}{}
		}
	}
	if err := w.waitDurable(3); err != nil {
		t.Fatal(err)
	}
	if d := w.durable(); d != math.MaxUint64 {
		t.Fatalf("durable = %d with nothing queued, want MaxUint64", d)
	}
	if last, _ := st.LastIndex(); last != 3 {
		t.Fatalf("store's LastIndex = %d, want 3", last)
	}

	// A configuration entry is written before StoreLogs returns, even
	// while leading.
	cfg := &raft.Log{Index: 4, Term: 1, Type: raft.LogConfiguration}
	if returns(func() { w.StoreLogs([]*raft.Log{cfg}) }) {
		t.Fatal("a configuration entry returned before it was written")
	}
	st.gate <- struct{}{}
	waitFor(t, func() bool { last, _ := st.LastIndex(); return last == 4 })

	// A follower writes before it returns, after what is queued.
	if err := w.StoreLogs([]*raft.Log{entry(5, 10)}); err != nil {
		t.Fatal(err)
	}
	leading.Store(false)
	stored := make(chan error, 1)
	go func() { stored <- w.StoreLogs([]*raft.Log{entry(6, 10)}) }()
	st.gate <- struct{}{} // entry 5
	select {
	case <-stored:
		t.Fatal("a follower's StoreLogs returned before its write")
	case <-time.After(100 * time.Millisecond):
	}
	st.gate <- struct{}{} // entry 6
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	if last, _ := st.LastIndex(); last != 6 {
		t.Fatalf("store's LastIndex = %d, want 6", last)
	}

	// DeleteRange writes what is queued first: the deleted suffix stays
	// deleted.
	leading.Store(true)
	if err := w.StoreLogs([]*raft.Log{entry(7, 10)}); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() { deleted <- w.DeleteRange(6, 7) }()
	st.gate <- struct{}{}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if last, _ := w.LastIndex(); last != 5 {
		t.Fatalf("LastIndex after deleting 6-7 = %d, want 5", last)
	}
}

func TestWriteBehindFailure(t *testing.T) {
	st := &gatedStore{InmemStore: raft.NewInmemStore()}
	st.fail.Store(true)
	failed := make(chan error, 1)
	w := newWriteBehind(st, func() bool { return true }, func(err error) { failed <- err })
	if err := w.StoreLogs([]*raft.Log{entry(1, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Fatal("onFail got no error")
	}
	if err := w.waitDurable(1); err == nil {
		t.Fatal("waitDurable after a failed write returned nil")
	}
	if err := w.StoreLogs([]*raft.Log{entry(2, 10)}); err == nil {
		t.Fatal("StoreLogs after a failed write returned nil")
	}
	if w.durable() != 0 {
		t.Fatalf("durable after a failed write of 1 = %d, want 0", w.durable())
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write returned nil")
	}
}

// recordingTransport records the AppendEntries requests it is given.
type recordingTransport struct {
	raft.Transport
	got []*raft.AppendEntriesRequest
}

func (r *recordingTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress,
	a *raft.AppendEntriesRequest, _ *raft.AppendEntriesResponse) error {
	r.got = append(r.got, a)
	return nil
}

func TestClampTransport(t *testing.T) {
	_, inner := raft.NewInmemTransport("a")
	rec := &recordingTransport{Transport: inner}
	durable := uint64(7)
	ct := &clampTransport{Transport: rec, durable: func() uint64 { return durable }}
	if _, ok := raft.Transport(ct).(raft.WithPreVote); !ok {
		t.Fatal("clampTransport hides pre-vote")
	}
	for _, commit := range []uint64{5, 7, 9} {
		a := &raft.AppendEntriesRequest{Term: 2, LeaderCommitIndex: commit}
		if err := ct.AppendEntries("b", "b", a, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
		if a.LeaderCommitIndex != commit {
			t.Fatalf("the caller's request was changed: %d", a.LeaderCommitIndex)
		}
	}
	for i, want := range []uint64{5, 7, 7} {
		if got := rec.got[i].LeaderCommitIndex; got != want {
			t.Fatalf("request %d sent commit %d, want %d", i, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A prefix below the queue (compaction while the leader keeps queueing)
// is deleted without waiting for the writer.
func TestWriteBehindCompactionDoesNotWait(t *testing.T) {
	st := &gatedStore{InmemStore: raft.NewInmemStore()}
	var leading atomic.Bool
	w := newWriteBehind(st, leading.Load, func(error) { t.Error("unexpected failure") })
	if err := w.StoreLogs([]*raft.Log{entry(1, 10), entry(2, 10), entry(3, 10)}); err != nil {
		t.Fatal(err)
	}
	st.gate = make(chan struct{})
	leading.Store(true)
	if err := w.StoreLogs([]*raft.Log{entry(4, 10)}); err != nil {
		t.Fatal(err)
	}
	if !returns(func() {
		if err := w.DeleteRange(1, 2); err != nil {
			t.Error(err)
		}
	}) {
		t.Fatal("compacting 1-2 waited for the write of 4")
	}
	if first, _ := w.FirstIndex(); first != 3 {
		t.Fatalf("FirstIndex after compaction = %d, want 3", first)
	}
	close(st.gate)
	if err := w.waitDurable(4); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// A store that does not follow the queue (a deposed leader that installed
// a snapshot and leads again from its index) is written synchronously
// after the queue, so the queue stays contiguous and GetLog never serves
// one entry for another.
func TestWriteBehindGap(t *testing.T) {
	st, w := gatedWriteBehind(t, func() bool { return true })
	if err := w.StoreLogs([]*raft.Log{entry(13, 1), entry(14, 1)}); err != nil {
		t.Fatal(err)
	}
	stored := make(chan error, 1)
	go func() { stored <- w.StoreLogs([]*raft.Log{entry(5001, 1)}) }()
	select {
	case err := <-stored:
		t.Fatalf("a store after a gap returned (%v) before the queue was written", err)
	case <-time.After(100 * time.Millisecond):
	}
	st.gate <- struct{}{} // the queue: 13-14
	st.gate <- struct{}{} // then 5001
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	for _, idx := range []uint64{13, 14, 5001} {
		if err := w.GetLog(idx, &l); err != nil || l.Index != idx {
			t.Fatalf("GetLog(%d) = entry %d, %v", idx, l.Index, err)
		}
	}
	for _, idx := range []uint64{15, 100, 5000} {
		if err := w.GetLog(idx, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) in the gap = entry %d, %v; want ErrLogNotFound", idx, l.Index, err)
		}
	}
}

// A StoreLogs waiting for room in the queue when Close runs either gets in
// before Close (and is written) or returns an error; it never queues into
// the stopped writer. Which one wins is up to the scheduler, so the race is
// run many times.
func TestWriteBehindCloseWhileWaiting(t *testing.T) {
	closedSeen := 0
	for range 50 {
		st := &gatedStore{InmemStore: raft.NewInmemStore(), gate: make(chan struct{})}
		w := newWriteBehind(st, func() bool { return true }, func(error) { t.Error("unexpected failure") })
		w.maxQueued = 5
		if err := w.StoreLogs([]*raft.Log{entry(1, 10)}); err != nil { // above the bound
			t.Fatal(err)
		}
		stored := make(chan error, 1)
		go func() { stored <- w.StoreLogs([]*raft.Log{entry(2, 10)}) }()
		waitFor(t, func() bool { // entry 1 being written, entry 2 parked
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.writing) == 1 && len(stored) == 0
		})
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		close(st.gate) // entry 1 is written; Close and StoreLogs wake
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		err := <-stored
		last, _ := st.InmemStore.LastIndex()
		switch {
		case err == nil && last == 2:
		case err != nil && last == 1:
			closedSeen++
		default:
			t.Fatalf("StoreLogs across Close returned %v and the store holds up to %d", err, last)
		}
	}
	t.Logf("%d of 50 stores lost the race to Close and returned an error", closedSeen)
}
