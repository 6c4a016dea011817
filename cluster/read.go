package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/walmq/walmq/journal"
)

// ReadResult is what Read returns: a partition's retained, committed
// offsets on this node and the messages read.
type ReadResult struct {
	// First and Next: the partition holds the committed offsets
	// [First, Next) here.
	First, Next uint64
	Messages    []journal.Message
}

// Read returns up to maxMsgs committed messages of a partition from offset,
// as this node holds them, waiting up to wait for one at offset when there
// is none yet. It needs no leader: a follower reads what it has applied,
// which may lag the leader. maxBytes bounds the messages' total size (0:
// none; at least one message is returned when any is available). An
// offset deleted by retention is journal.ErrOffsetTruncated; a damaged
// record a *journal.CorruptionError, and nothing of it is returned.
func (n *Node) Read(ctx context.Context, topic string, part int, offset uint64, maxMsgs, maxBytes int, wait time.Duration) (ReadResult, error) {
	if maxMsgs <= 0 {
		return ReadResult{}, fmt.Errorf("%w: max %d must be positive", ErrInvalidArgument, maxMsgs)
	}
	select {
	case <-n.ctx.Done():
		return ReadResult{}, ErrClosed
	case <-n.fatal:
		return ReadResult{}, n.Err()
	default:
	}
	p, err := n.fsm.Partition(topic, part)
	if err != nil {
		return ReadResult{}, err
	}
	if wait > 0 && p.Watermark() <= offset {
		wctx, cancel := context.WithTimeout(ctx, wait)
		for p.Watermark() <= offset {
			if err := p.Wait(wctx, p.Watermark()); err != nil {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return ReadResult{}, err
		}
	}
	// The watermark first: what is read below it is committed, and the
	// first offset read after it cannot pass it.
	next := p.Watermark()
	first := min(p.Journal().FirstOffset(), next)
	msgs, err := p.Read(offset, maxMsgs, maxBytes)
	if err != nil {
		return ReadResult{}, fmt.Errorf("read %s/%d at offset %d: %w", topic, part, offset, err)
	}
	if len(msgs) > 0 {
		next = max(next, msgs[len(msgs)-1].Offset+1)
	}
	return ReadResult{First: first, Next: next, Messages: msgs}, nil
}
