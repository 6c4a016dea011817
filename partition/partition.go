package partition

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/walmq/walmq/journal"
)

// Sentinel errors. Test with errors.Is.
var (
	ErrUnknownGroup = errors.New("partition: unknown consumer group")
	ErrGroupExists  = errors.New("partition: consumer group exists")
	// ErrNotPending is the error of Release and Nack for an offset that was
	// never delivered, is out of range, is not leased, or is already settled.
	ErrNotPending = errors.New("partition: offset is not pending for the group")
	ErrClosed     = errors.New("partition: closed")
)

// Partition is one partition of a topic: a journal, its committed
// watermark, the committed state of its consumer groups and the leader's
// in-memory leases. All methods are safe for concurrent use.
type Partition struct {
	j *journal.Journal

	wm     atomic.Uint64 // written with wmu held
	closed atomic.Bool   // written with wmu held
	wmu    sync.Mutex
	wake   chan struct{} // closed when wm advances or on Close; nil when nobody waits

	mu     sync.Mutex // guards groups and everything in them
	groups map[string]*group
}

// Open opens (creating if needed) the partition's journal in dir. Every
// message in the journal is committed, so the watermark starts at its next
// offset. The partition starts with no consumer groups: the FSM restores
// them from its snapshot (SetGroupState) and the Raft log.
func Open(dir string, opts journal.Options) (*Partition, error) {
	j, err := journal.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("partition: open %s: %w", dir, err)
	}
	p := &Partition{j: j, groups: map[string]*group{}}
	p.wm.Store(j.NextOffset())
	return p, nil
}

// Journal returns the partition's journal, for syncing, retention cutoffs
// and inspection. Appending to it directly does not move the watermark.
func (p *Partition) Journal() *journal.Journal { return p.j }

// Close closes the journal and wakes every waiter with ErrClosed. Later
// calls of Append, Read and Lease return ErrClosed. Close of a closed
// partition does nothing and returns nil.
func (p *Partition) Close() error {
	p.wmu.Lock()
	if p.closed.Load() {
		p.wmu.Unlock()
		return nil
	}
	p.closed.Store(true)
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	p.wmu.Unlock()
	if err := p.j.Close(); err != nil {
		return fmt.Errorf("partition: close: %w", err)
	}
	return nil
}

// closedErr makes the journal's ErrClosed also satisfy errors.Is(err,
// ErrClosed); it returns every other error unchanged.
func closedErr(err error) error {
	if err != nil && errors.Is(err, journal.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Append appends b through journal.Append and, on success, moves the
// watermark to the journal's next offset and wakes the waiters. Errors of
// the journal are returned unchanged (errors.Is(err, journal.ErrStaleIndex)
// holds for a replayed entry), except that after Close the error satisfies
// both errors.Is(err, ErrClosed) and errors.Is(err, journal.ErrClosed).
func (p *Partition) Append(b journal.Batch) (base uint64, err error) {
	base, err = p.j.Append(b)
	if err != nil {
		return 0, closedErr(err)
	}
	p.advance(p.j.NextOffset())
	return base, nil
}

// advance raises the watermark to next and wakes the waiters.
func (p *Partition) advance(next uint64) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if next <= p.wm.Load() {
		return
	}
	p.wm.Store(next)
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// Watermark is the offset below which messages are committed and may be
// read by consumers.
func (p *Partition) Watermark() uint64 { return p.wm.Load() }

// Wait blocks until Watermark() > after, ctx is done (it returns
// ctx.Err()), or the partition is closed (ErrClosed). It starts no
// goroutine.
func (p *Partition) Wait(ctx context.Context, after uint64) error {
	for {
		p.wmu.Lock()
		if p.closed.Load() {
			p.wmu.Unlock()
			return ErrClosed
		}
		if p.wm.Load() > after {
			p.wmu.Unlock()
			return nil
		}
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		ch := p.wake
		p.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Read returns up to maxMsgs committed messages from offset from, with the
// byte limit of journal.Read (0: none; at least one message is returned
// when any is available). It never returns an offset at or past the
// watermark. Errors are those of journal.Read, with ErrClosed as in Append.
func (p *Partition) Read(from uint64, maxMsgs, maxBytes int) ([]journal.Message, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	wm := p.wm.Load()
	if maxMsgs <= 0 || from >= wm {
		return nil, nil
	}
	if n := wm - from; uint64(maxMsgs) > n {
		maxMsgs = int(n)
	}
	msgs, err := p.j.Read(from, maxMsgs, maxBytes)
	return msgs, closedErr(err)
}
