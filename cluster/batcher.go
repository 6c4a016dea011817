package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

type partKey struct {
	topic string
	part  int
}

type pubReq struct {
	msgs  []journal.Message
	bytes int
	done  func(pubResp) // called once, from the batcher's goroutines; must not block
}

type pubResp struct {
	res *fsm.PublishResult
	err error
}

// batcher forms the publish entries of one partition: it drains every
// request queued while the previous entries commit (group commit), up to
// the batch limits, and keeps up to PipelineDepth entries in flight.
type batcher struct {
	n   *Node
	key partKey
	in  chan *pubReq

	// Senders hold mu shared while they queue; the batcher takes it
	// exclusively to stop, so nothing is queued after its last drain.
	mu      sync.RWMutex
	stopped bool
}

// Publish appends msgs to a partition of a topic and returns their
// offsets once the entry carrying them is committed in the Raft log
// (fsynced by a quorum) and applied. Concurrent publishes to a partition
// share entries. A publish larger than one entry is split; each part is
// committed on its own, so on an error some parts may be stored: retry
// with the same message ids.
func (n *Node) Publish(ctx context.Context, topic string, part int, msgs []journal.Message) (*fsm.PublishResult, error) {
	ch := make(chan pubResp, 1)
	if err := n.PublishAsync(ctx, topic, part, msgs, func(res *fsm.PublishResult, err error) {
		ch <- pubResp{res, err}
	}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

// PublishAsync queues msgs for a partition and returns; done is called
// once with the outcome, from another goroutine, and must not block. The
// messages of PublishAsync calls made one after the other are stored in
// that order. It blocks only while the partition's queue is full, or
// returns an error without calling done if msgs are refused at once.
func (n *Node) PublishAsync(ctx context.Context, topic string, part int, msgs []journal.Message, done func(*fsm.PublishResult, error)) error {
	if len(msgs) == 0 {
		return fsm.ErrEmptyPublish
	}
	if err := n.usable(); err != nil {
		return err
	}
	// Split into parts of at most one entry each; the parts share msgs.
	var reqs []*pubReq
	start, bytes := 0, 0
	for i := range msgs {
		sz := journal.MessageSize(&msgs[i])
		if sz > n.cfg.MaxMessageBytes {
			return fmt.Errorf("%w: message %d is %d bytes, the limit is %d", fsm.ErrMessageTooLarge, i, sz, n.cfg.MaxMessageBytes)
		}
		if i > start && (i-start == n.cfg.MaxBatchMessages || bytes+sz > n.cfg.MaxBatchBytes) {
			reqs = append(reqs, &pubReq{msgs: msgs[start:i:i], bytes: bytes})
			start, bytes = i, 0
		}
		bytes += sz
	}
	reqs = append(reqs, &pubReq{msgs: msgs[start:len(msgs):len(msgs)], bytes: bytes})
	if len(reqs) == 1 {
		reqs[0].done = func(r pubResp) { done(r.res, r.err) }
	} else {
		gather(reqs, done)
	}
	b, err := n.batcher(partKey{topic, part})
	if err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.stopped {
		return ErrClosed
	}
	for i, r := range reqs {
		select {
		case b.in <- r:
		case <-ctx.Done():
			err = ctx.Err()
		case <-n.ctx.Done():
			err = ErrClosed
		}
		if err != nil {
			// The parts queued will answer; answer for the others.
			for _, r := range reqs[i:] {
				r.done(pubResp{err: err})
			}
			return nil
		}
	}
	return nil
}

// JoinOutcomes is the error of a publish made of parts (entries, or
// partitions) whose outcomes were errs (nil: stored). When every part was
// refused before reaching the log (ErrNotLeader) or rejected as invalid,
// nothing was stored: the first error. When some parts failed but others
// were stored or may have been, retrying the whole publish would store
// those again unless its messages carry ids: the outcome is unknown
// (ErrTimeout).
func JoinOutcomes(errs []error) error {
	var first error
	failed, refused := 0, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if first == nil {
			first = err
		}
		if errors.Is(err, ErrNotLeader) || invalid(err) {
			refused++
		}
	}
	switch {
	case failed == 0:
		return nil
	case refused == len(errs):
		return first
	}
	// The cause is text only: errors.Is must not find a refusal in it.
	return fmt.Errorf("%w: %d of %d parts of the publish failed, the others may be stored: %v", ErrTimeout, failed, len(errs), first)
}

// invalid reports an error that rejects a publish before it is stored.
func invalid(err error) bool {
	return errors.Is(err, fsm.ErrTopicNotFound) || errors.Is(err, fsm.ErrPartitionRange) ||
		errors.Is(err, fsm.ErrMessageTooLarge) || errors.Is(err, fsm.ErrEmptyPublish) || errors.Is(err, fsm.ErrBadCommand)
}

// gather makes the parts of a split publish answer done once, with the
// results in order or their joined outcome (JoinOutcomes).
func gather(reqs []*pubReq, done func(*fsm.PublishResult, error)) {
	var mu sync.Mutex
	results := make([]*fsm.PublishResult, len(reqs))
	errs := make([]error, len(reqs))
	left := len(reqs)
	for i, r := range reqs {
		r.done = func(resp pubResp) {
			mu.Lock()
			results[i], errs[i] = resp.res, resp.err
			left--
			last := left == 0
			mu.Unlock()
			if !last {
				return
			}
			if err := JoinOutcomes(errs); err != nil {
				done(nil, err)
				return
			}
			out := &fsm.PublishResult{}
			for _, res := range results {
				out.Partitions = append(out.Partitions, res.Partitions...)
				out.Offsets = append(out.Offsets, res.Offsets...)
				out.Duplicate = append(out.Duplicate, res.Duplicate...)
			}
			done(out, nil)
		}
	}
}

func (n *Node) batcher(k partKey) (*batcher, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	b, ok := n.batchers[k]
	if !ok {
		b = &batcher{n: n, key: k, in: make(chan *pubReq, 1024)}
		n.batchers[k] = b
		n.wg.Add(1)
		go b.run()
	}
	return b, nil
}

func (b *batcher) run() {
	n := b.n
	defer n.wg.Done()
	slots := make(chan struct{}, n.cfg.PipelineDepth)
	var pending []*pubReq
	// Each entry's answer waits for the previous entry's, so a
	// partition's publishes are answered in the order they are stored.
	prev := make(chan struct{})
	close(prev)
	fail := func(err error) {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		for _, r := range pending {
			r.done(pubResp{err: err})
		}
		for {
			select {
			case r := <-b.in:
				r.done(pubResp{err: err})
			default:
				return
			}
		}
	}
	for {
		if len(pending) == 0 {
			select {
			case r := <-b.in:
				pending = append(pending, r)
			case <-n.ctx.Done():
				fail(ErrClosed)
				return
			}
		}
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
			fail(ErrClosed)
			return
		}
		pending = b.gather(pending)
		batch, rest := b.take(pending)
		pending = rest
		// Submit in order here; only the wait runs concurrently, so the
		// entries of one partition reach the log in the order queued.
		f, err := b.submit(batch)
		after, mine := prev, make(chan struct{})
		prev = mine
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-slots }()
			defer close(mine)
			if err != nil {
				<-after
				answer(batch, nil, err)
				return
			}
			b.await(batch, f, after)
		}()
	}
}

// gather adds what is queued (waiting up to Linger for more) to pending.
func (b *batcher) gather(pending []*pubReq) []*pubReq {
	var linger <-chan time.Time
	if b.n.cfg.Linger > 0 {
		t := time.NewTimer(b.n.cfg.Linger)
		defer t.Stop()
		linger = t.C
	}
	msgs := 0
	for _, r := range pending {
		msgs += len(r.msgs)
	}
	for msgs < b.n.cfg.MaxBatchMessages {
		select {
		case r := <-b.in:
			pending = append(pending, r)
			msgs += len(r.msgs)
			continue
		default:
		}
		if linger == nil {
			break
		}
		select {
		case r := <-b.in:
			pending = append(pending, r)
			msgs += len(r.msgs)
			continue
		case <-linger:
		}
		break
	}
	return pending
}

// take splits off the requests of one entry.
func (b *batcher) take(pending []*pubReq) (batch, rest []*pubReq) {
	msgs, bytes := 0, 0
	i := 0
	for ; i < len(pending); i++ {
		r := pending[i]
		if i > 0 && (msgs+len(r.msgs) > b.n.cfg.MaxBatchMessages || bytes+r.bytes > b.n.cfg.MaxBatchBytes) {
			break
		}
		msgs += len(r.msgs)
		bytes += r.bytes
	}
	return pending[:i], append([]*pubReq(nil), pending[i:]...)
}

// submit proposes one entry carrying the messages of batch.
func (b *batcher) submit(batch []*pubReq) (raft.ApplyFuture, error) {
	n := b.n
	parts := make([][]journal.Message, len(batch))
	for i, r := range batch {
		parts[i] = r.msgs
	}
	data := fsm.EncodePublishParts(b.key.topic, b.key.part, time.Now().UnixNano(), parts)
	if err := n.usable(); err != nil {
		return nil, err
	}
	return n.raft.Apply(data, 0), nil
}

// await waits for an entry, then for the previous entry's answer
// (after), and answers its requests.
func (b *batcher) await(batch []*pubReq, f raft.ApplyFuture, after <-chan struct{}) {
	err := f.Error()
	<-after
	if err != nil {
		answer(batch, nil, raftError(err))
		return
	}
	switch r := f.Response().(type) {
	case error:
		answer(batch, nil, r)
	case *fsm.PublishResult:
		answer(batch, r, nil)
	default:
		answer(batch, nil, fmt.Errorf("cluster: unexpected publish response %T", r))
	}
}

// answer gives each request of a batch its part of the result, or err.
func answer(batch []*pubReq, res *fsm.PublishResult, err error) {
	k := 0
	for _, r := range batch {
		if err != nil {
			r.done(pubResp{err: err})
			continue
		}
		part := &fsm.PublishResult{
			Partitions: res.Partitions[k : k+len(r.msgs)],
			Offsets:    res.Offsets[k : k+len(r.msgs)],
			Duplicate:  res.Duplicate[k : k+len(r.msgs)]}
		k += len(r.msgs)
		r.done(pubResp{res: part})
	}
}
