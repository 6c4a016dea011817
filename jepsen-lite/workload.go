package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walmq/walmq"
)

// The topic the producers write and its consumer group for the final read.
const (
	topic      = "jepsen"
	partitions = 3
	checkGroup = "jepsen-check"
)

// publishTimeout bounds one publish call: the client retries inside it
// for RetryFor (5 s).
const publishTimeout = 15 * time.Second

// definite are the errors after which a publish certainly stored nothing:
// refusals. Every other error leaves the outcome unknown.
var definite = []error{walmq.ErrNotLeader, walmq.ErrTopicNotFound, walmq.ErrInvalidName, walmq.ErrInvalidConfig,
	walmq.ErrInvalidArgument, walmq.ErrPartitionRange, walmq.ErrMessageTooLarge, walmq.ErrEmptyPublish}

// isDefinite reports whether a publish that failed with err certainly
// stored nothing.
func isDefinite(err error) bool {
	for _, d := range definite {
		if errors.Is(err, d) {
			return true
		}
	}
	return false
}

// producer publishes "p<n>-<counter>" values, one at a time, through a
// client that starts with its home node.
type producer struct {
	name   string // "p0", ...
	node   string // home node
	client *walmq.Client
	hist   *History
}

// run publishes until stop is closed (then the value in hand gets no more
// retries) or ctx is done. A value whose publish failed for sure is
// dropped; one whose outcome is unknown is published again with the same
// id until it is acknowledged, fails for sure, or the run stops.
func (p *producer) run(ctx context.Context, stop <-chan struct{}) {
	for counter := 0; !stopped(ctx, stop); counter++ {
		value := fmt.Sprintf("%s-%d", p.name, counter)
		for !stopped(ctx, stop) {
			if p.publish(ctx, value) != Info {
				break
			}
			pause(ctx, 100*time.Millisecond)
		}
	}
}

// publish makes one attempt at value and returns how it ended: OK, Fail
// or Info.
func (p *producer) publish(ctx context.Context, value string) string {
	op := Op{Process: p.name, Node: p.node, F: FPublish, Value: value}
	op.Type = Invoke
	p.hist.Add(op)
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	acks, err := p.client.Publish(pctx, topic, walmq.Message{ID: value, Payload: []byte(value)})
	cancel()
	switch {
	case err == nil && len(acks) == 1:
		op.Type = OK
		op.Partition, op.Offset, op.Duplicate = intPtr(acks[0].Partition), uint64Ptr(acks[0].Offset), acks[0].Duplicate
	case err == nil:
		op.Type, op.Error = Info, fmt.Sprintf("%d acks for one message", len(acks))
	case isDefinite(err):
		op.Type, op.Error = Fail, err.Error()
	default:
		op.Type, op.Error = Info, err.Error()
	}
	p.hist.Add(op)
	return op.Type
}
