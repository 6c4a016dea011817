package main

import (
	"context"
	"errors"
	"math/rand"
	"time"

	"github.com/walmq/walmq"
)

// The consumer group the workload's consumers share. Its AckWait is short
// so that the batches a consumer drops (and those a fault strands) come
// back within the run; MaxDeliver -1: never dead-lettered.
const (
	consumeGroup   = "jepsen-consume"
	consumeAckWait = 3 * time.Second
)

// dropRate is the share of fetched batches a consumer does not ack: they
// are delivered again after AckWait.
const dropRate = 0.05

// callTimeout bounds a consumer's, sampler's or reader's call.
const callTimeout = 10 * time.Second

// consumer fetches from the group and acks what it got, through a client
// that starts with its home node.
type consumer struct {
	name   string // "c0", ...
	node   string
	client *walmq.Client
	hist   *History
	rng    *rand.Rand
}

// run fetches and acks until stop is closed or ctx is done.
func (c *consumer) run(ctx context.Context, stop <-chan struct{}) {
	for !stopped(ctx, stop) {
		ds, ok := c.fetch(ctx, 100, 500*time.Millisecond)
		if !ok {
			pause(ctx, 100*time.Millisecond)
			continue
		}
		if len(ds) == 0 || c.rng.Float64() < dropRate {
			continue // dropped: redelivered after AckWait
		}
		c.ack(ctx, ds)
	}
}

// fetch makes one Fetch and records it; ok is false when it failed.
func (c *consumer) fetch(ctx context.Context, max int, wait time.Duration) ([]walmq.Delivery, bool) {
	op := Op{Process: c.name, Node: c.node, Type: Invoke, F: FFetch}
	c.hist.Add(op)
	fctx, cancel := context.WithTimeout(ctx, callTimeout)
	ds, err := c.client.Fetch(fctx, consumeGroup, topic, max, wait)
	cancel()
	// An empty fetch answers nil; an error, even a deadline (the call's
	// timeout, far past its wait), leaves unknown what the node leased.
	if err == nil {
		op.Type, op.Msgs = OK, deliveredMsgs(ds)
	} else {
		op.Type, op.Error = Info, err.Error()
	}
	c.hist.Add(op)
	return ds, op.Type == OK
}

// ack acks ds and records it.
func (c *consumer) ack(ctx context.Context, ds []walmq.Delivery) {
	op := Op{Process: c.name, Node: c.node, Type: Invoke, F: FAck, Msgs: deliveredMsgs(ds)}
	c.hist.Add(op)
	refs := make([]walmq.Ref, len(ds))
	for i, d := range ds {
		refs[i] = d.Ref
	}
	actx, cancel := context.WithTimeout(ctx, callTimeout)
	err := c.client.Ack(actx, refs...)
	cancel()
	op.Type = OK
	if err != nil {
		op.Type, op.Error = Info, err.Error()
	}
	c.hist.Add(op)
}

func deliveredMsgs(ds []walmq.Delivery) []Msg {
	out := make([]Msg, len(ds))
	for i, d := range ds {
		out[i] = Msg{P: d.Partition, O: d.Offset, V: string(d.Payload), D: d.Deliveries}
	}
	return out
}

// sampler asks the cluster for the consumers' group's ack floors every
// interval (DescribeGroup is a linearizable read: the leader's view).
type sampler struct {
	client *walmq.Client
	hist   *History
}

const sampleEvery = 500 * time.Millisecond

func (s *sampler) run(ctx context.Context, stop <-chan struct{}) {
	for !stopped(ctx, stop) {
		describeGroup(ctx, s.client, s.hist, "g", "")
		pause(ctx, sampleEvery)
	}
}

// describeGroup records one DescribeGroup of the consumers' group as an
// op of process and returns the floors (nil on error).
func describeGroup(ctx context.Context, cl *walmq.Client, hist *History, process, node string) []uint64 {
	op := Op{Process: process, Node: node, Type: Invoke, F: FDescribe}
	hist.Add(op)
	dctx, cancel := context.WithTimeout(ctx, callTimeout)
	gi, err := cl.DescribeGroup(dctx, topic, consumeGroup)
	cancel()
	if err != nil {
		op.Type, op.Error = Info, err.Error()
		hist.Add(op)
		return nil
	}
	floors := make([]uint64, partitions)
	for _, p := range gi.Partitions {
		if p.Partition >= 0 && p.Partition < partitions {
			floors[p.Partition] = p.AckFloor
		}
	}
	op.Type, op.Floors = OK, floors
	hist.Add(op)
	return floors
}

// reader reads one node's replica (Read is never forwarded): each
// partition in turn, from offset 0 to its end, 200 messages a call, then
// again from 0. What a node serves must be committed, so it must match
// what every node holds at the end.
type reader struct {
	node   string
	client *walmq.Client // talks to node alone
	hist   *History
	next   [partitions]uint64 // where the scan of each partition is
}

func (r *reader) run(ctx context.Context, stop <-chan struct{}) {
	process := "r-" + r.node
	for p := 0; !stopped(ctx, stop); p = (p + 1) % partitions {
		from := r.next[p]
		op := Op{Process: process, Node: r.node, Type: Invoke, F: FReadAt, Partition: intPtr(p), Offset: uint64Ptr(from)}
		r.hist.Add(op)
		rctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := r.client.Read(rctx, topic, p, from, 200, 0)
		cancel()
		if err != nil {
			op.Type, op.Error = Info, err.Error()
			if errors.Is(err, walmq.ErrInvalidArgument) || errors.Is(err, walmq.ErrPartitionRange) {
				op.Type = Fail
			}
			r.hist.Add(op)
			r.next[p] = 0
			pause(ctx, 200*time.Millisecond)
			continue
		}
		op.Type = OK
		for _, rec := range res.Records {
			op.Msgs = append(op.Msgs, Msg{P: p, O: rec.Offset, V: string(rec.Payload)})
		}
		r.hist.Add(op)
		if n := len(res.Records); n > 0 {
			r.next[p] = res.Records[n-1].Offset + 1
		} else {
			r.next[p] = 0 // at the end: start over
		}
		pause(ctx, 20*time.Millisecond)
	}
}

// stopped reports whether stop is closed or ctx done.
func stopped(ctx context.Context, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return ctx.Err() != nil
	}
}

// pause waits d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
