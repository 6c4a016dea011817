package cluster

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// writeBehind lets the leader write its own Raft log in parallel with
// replication, as the Raft thesis allows (§10.2.1). hashicorp/raft writes
// the leader's entries in its main loop and only then hands them to the
// replicators, so every commit waits for two log writes in series: the
// leader's, then a follower's.
//
// While this node leads, StoreLogs queues command entries and returns; one
// goroutine writes whatever is queued in one log-store call. Raft then
// counts the leader's own copy towards the quorum before it is on disk, so
// "committed" in raft's sense no longer implies "on a majority's disks". Two
// gates restore that, and nothing reads or acknowledges an entry before it
// is on a majority:
//
//   - the state machine applies an entry only once no entry at or below it
//     is still queued here (waitDurable, called by fsm.Options.WaitDurable):
//     the leader's acknowledgement comes from its state machine, so an
//     acknowledged entry is on the leader's disk and, being committed, on a
//     follower's;
//   - the commit index the leader sends its followers is capped at its own
//     durable prefix (clampTransport): a follower applies an entry only when
//     the leader holds it on disk and the follower does (followers always
//     write before they answer).
//
// The quorum the leader computes counts at most one early copy, its own, so
// a commit index capped at the leader's durable prefix is held on disk by
// the leader and by the followers the commit counted. Configuration entries
// are always written before StoreLogs returns, so membership changes keep
// raft's own rule. A follower (and a candidate) always writes before it
// returns: its answer counts at the leader. A write error is fatal: the
// entries are already in raft's memory, so the node must stop (onFail).
type writeBehind struct {
	store raft.LogStore
	// async reports whether StoreLogs may return before the write: true
	// only while this node leads. It is read on raft's main goroutine,
	// which is also the one that changes the state, so it is exact there.
	async  func() bool
	onFail func(error)
	// maxQueued bounds the bytes queued; StoreLogs waits above it.
	maxQueued int

	mu      sync.Mutex
	cond    *sync.Cond // signalled on every write done, failure or close
	queue   []*raft.Log
	writing []*raft.Log
	bytes   int // queued and being written
	err     error
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// beforeWrite, when set, runs before each queued write; an error it
	// returns fails the write as the store's would (tests stall or fail
	// the writer with it).
	beforeWrite atomic.Pointer[func() error]
}

// errLogClosed is StoreLogs's answer once Close has run.
var errLogClosed = errors.New("cluster: raft log closed")

func newWriteBehind(store raft.LogStore, async func() bool, onFail func(error)) *writeBehind {
	w := &writeBehind{store: store, async: async, onFail: onFail, maxQueued: 64 << 20,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

func (w *writeBehind) run() {
	defer close(w.done)
	for range w.wake {
		w.mu.Lock()
		for len(w.queue) > 0 && w.err == nil {
			w.writing, w.queue = w.queue, nil
			w.mu.Unlock()
			var err error
			if f := w.beforeWrite.Load(); f != nil {
				err = (*f)()
			}
			if err == nil {
				err = w.store.StoreLogs(w.writing)
			}
			w.mu.Lock()
			if err != nil {
				w.err = fmt.Errorf("cluster: write raft log entries %d-%d: %w",
					w.writing[0].Index, w.writing[len(w.writing)-1].Index, err)
				w.mu.Unlock()
				w.onFail(w.err)
				w.mu.Lock()
			} else {
				for _, l := range w.writing {
					w.bytes -= len(l.Data)
				}
				w.writing = nil
			}
			w.cond.Broadcast()
		}
		w.mu.Unlock()
	}
}

// pendingLocked is the first index still queued or being written, or 0.
func (w *writeBehind) pendingLocked() uint64 {
	switch {
	case len(w.writing) > 0:
		return w.writing[0].Index
	case len(w.queue) > 0:
		return w.queue[0].Index
	}
	return 0
}

// durable is the highest index below which nothing is queued: every entry
// of the log at or below it is on disk. MaxUint64 when nothing is queued.
func (w *writeBehind) durable() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.pendingLocked(); p > 0 {
		return p - 1
	}
	return math.MaxUint64
}

// Err is the write error that failed the log, if any.
func (w *writeBehind) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// waitDurable waits until every entry at or below idx is on disk.
func (w *writeBehind) waitDurable(idx uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.err != nil {
			return w.err
		}
		if p := w.pendingLocked(); p == 0 || p > idx {
			return nil
		}
		w.cond.Wait()
	}
}

// flushLocked waits until nothing is queued.
func (w *writeBehind) flushLocked() error {
	for w.err == nil && w.pendingLocked() != 0 {
		w.cond.Wait()
	}
	return w.err
}

func (w *writeBehind) StoreLog(log *raft.Log) error { return w.StoreLogs([]*raft.Log{log}) }

func (w *writeBehind) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	async := w.async()
	for _, l := range logs {
		if l.Type != raft.LogCommand && l.Type != raft.LogNoop && l.Type != raft.LogBarrier {
			async = false // membership changes keep raft's own rule
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		// Checked again after every wait: Close or a failure may come
		// while this call waits for room or for the queue to drain.
		if w.err != nil {
			return w.err
		}
		if w.closed {
			return errLogClosed
		}
		if w.bytes <= w.maxQueued {
			break
		}
		w.cond.Wait()
	}
	if last := w.lastQueuedLocked(); last > 0 && logs[0].Index != last+1 {
		// Not the queue's next entry (a deposed leader that installed a
		// snapshot, then leads again from the snapshot's index): the queue
		// stays one contiguous run, which GetLog relies on.
		async = false
	}
	if !async {
		// Write in order after what is queued, and here: a caller that
		// must not return early gains nothing from the writer goroutine.
		// Only raft's main goroutine stores, so nothing is queued
		// behind this write while the lock is released.
		if err := w.flushLocked(); err != nil {
			return err
		}
		if w.closed {
			return errLogClosed
		}
		w.mu.Unlock()
		err := w.store.StoreLogs(logs)
		w.mu.Lock()
		return err
	}
	w.queue = append(w.queue, logs...)
	for _, l := range logs {
		w.bytes += len(l.Data)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// GetLog reads a queued entry from memory, any other from the store.
func (w *writeBehind) GetLog(idx uint64, log *raft.Log) error {
	w.mu.Lock()
	for _, q := range [2][]*raft.Log{w.writing, w.queue} {
		if len(q) == 0 || idx < q[0].Index {
			continue
		}
		if i := idx - q[0].Index; i < uint64(len(q)) && q[i].Index == idx {
			*log = *q[i]
			w.mu.Unlock()
			return nil
		}
	}
	w.mu.Unlock()
	return w.store.GetLog(idx, log)
}

func (w *writeBehind) FirstIndex() (uint64, error) {
	first, err := w.store.FirstIndex()
	if err != nil || first > 0 {
		return first, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pendingLocked(), nil
}

// lastQueuedLocked is the last index queued or being written, or 0.
func (w *writeBehind) lastQueuedLocked() uint64 {
	if n := len(w.queue); n > 0 {
		return w.queue[n-1].Index
	}
	if n := len(w.writing); n > 0 {
		return w.writing[n-1].Index
	}
	return 0
}

func (w *writeBehind) LastIndex() (uint64, error) {
	w.mu.Lock()
	last := w.lastQueuedLocked()
	w.mu.Unlock()
	if last > 0 {
		return last, nil
	}
	return w.store.LastIndex()
}

// DeleteRange first waits for the queued entries it overlaps, so that a
// suffix deleted by a follower that used to lead is not written again
// after the delete. A prefix below the queue (compaction after a snapshot,
// on raft's snapshot goroutine while the leader keeps queueing) waits for
// nothing: waiting for an empty queue would starve it under load.
func (w *writeBehind) DeleteRange(min, max uint64) error {
	w.mu.Lock()
	last := w.lastQueuedLocked()
	for w.err == nil {
		if p := w.pendingLocked(); p == 0 || p > max || p > last {
			break
		}
		w.cond.Wait()
	}
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return w.store.DeleteRange(min, max)
}

// Close writes what is queued and stops the writer.
func (w *writeBehind) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.err
	}
	err := w.flushLocked()
	w.closed = true
	close(w.wake)
	w.mu.Unlock()
	<-w.done
	return err
}

// clampTransport caps the commit index the leader sends at its own durable
// prefix (see writeBehind).
type clampTransport struct {
	raft.Transport
	durable func() uint64
}

func (t *clampTransport) clamp(a *raft.AppendEntriesRequest) *raft.AppendEntriesRequest {
	if d := t.durable(); a.LeaderCommitIndex > d {
		c := *a
		c.LeaderCommitIndex = d
		return &c
	}
	return a
}

func (t *clampTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.Transport.AppendEntries(id, target, t.clamp(args), resp)
}

func (t *clampTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &clampPipeline{AppendPipeline: p, t: t}, nil
}

// RequestPreVote keeps pre-vote on: raft turns it off for a transport
// without it.
func (t *clampTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pv, ok := t.Transport.(raft.WithPreVote)
	if !ok {
		return errors.New("cluster: transport has no pre-vote")
	}
	return pv.RequestPreVote(id, target, args, resp)
}

func (t *clampTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

type clampPipeline struct {
	raft.AppendPipeline
	t *clampTransport
}

func (p *clampPipeline) AppendEntries(args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	return p.AppendPipeline.AppendEntries(p.t.clamp(args), resp)
}
