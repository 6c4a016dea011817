package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/walmq/walmq/fsm"
)

// acker batches settled offsets into Settle commands: one Raft entry per
// group and topic when CommitEvery offsets are pending or the oldest has
// waited CommitMaxDelay. An ack not yet committed when the node crashes is
// lost, and its message is delivered again: at-least-once.
type acker struct {
	n    *Node
	kick chan struct{}

	mu      sync.Mutex
	pending map[[2]string]map[int][]uint64 // {group, topic} -> partition -> offsets
	count   int
	oldest  time.Time
	flushMu sync.Mutex // one commit round at a time
}

func newAcker(n *Node) *acker {
	return &acker{n: n, kick: make(chan struct{}, 1), pending: map[[2]string]map[int][]uint64{}}
}

func (a *acker) add(group, topic string, part int, offs []uint64) {
	a.mu.Lock()
	gk := [2]string{group, topic}
	m := a.pending[gk]
	if m == nil {
		m = map[int][]uint64{}
		a.pending[gk] = m
	}
	m[part] = append(m[part], offs...)
	if a.count == 0 {
		a.oldest = time.Now()
	}
	a.count += len(offs)
	full := a.count >= a.n.cfg.CommitEvery
	a.mu.Unlock()
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

func (a *acker) run() {
	defer a.n.bg.Done()
	t := time.NewTicker(a.n.cfg.CommitMaxDelay / 2)
	defer t.Stop()
	for {
		select {
		case <-a.n.bgCtx.Done():
			// Commit what is pending before the node stops.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.flush(ctx)
			cancel()
			return
		case <-a.kick:
		case <-t.C:
			a.mu.Lock()
			due := a.count > 0 && time.Since(a.oldest) >= a.n.cfg.CommitMaxDelay
			a.mu.Unlock()
			if !due {
				continue
			}
		}
		a.flush(a.n.bgCtx)
	}
}

// flush commits every pending ack. Acks that fail to commit are logged;
// their messages will be delivered again.
func (a *acker) flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	batch := a.pending
	a.pending = map[[2]string]map[int][]uint64{}
	a.count = 0
	a.mu.Unlock()
	var first error
	for gk, offs := range batch {
		_, err := a.n.propose(ctx, &fsm.Settle{Group: gk[0], Topic: gk[1], Offsets: offs})
		if err == nil {
			continue
		}
		if gone(err) {
			continue // the group or topic is gone: nothing to settle
		}
		if errors.Is(err, ErrNotLeader) {
			// Leadership moved: the new leader starts with no leases, so
			// these messages are delivered again (at-least-once).
			a.n.log.Debug("acks dropped: no longer the leader", "group", gk[0], "topic", gk[1])
			continue
		}
		if first == nil {
			first = err
		}
		// Keep them for the next round; if the node stops first, the
		// messages are delivered again after the restart.
		a.n.log.Warn("ack commit failed; retrying", "group", gk[0], "topic", gk[1], "error", err)
		for p, o := range offs {
			a.add(gk[0], gk[1], p, o)
		}
	}
	return first
}

// gone reports an ack commit that can never succeed.
func gone(err error) bool {
	return errors.Is(err, fsm.ErrGroupNotFound) || errors.Is(err, fsm.ErrTopicNotFound) || errors.Is(err, fsm.ErrPartitionRange)
}
