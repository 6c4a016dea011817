package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/walmq/walmq"
)

// FinalRead is what the cluster holds after the run: every partition read
// from offset 0 through one node, and every node's checksum of each
// partition up to the leader's end offsets.
type FinalRead struct {
	Nodes []string `json:"nodes"`
	// Ends are the leader's end offsets (next offset) per partition.
	Ends []uint64 `json:"ends"`
	// Entries are the messages read, per partition, in offset order.
	Entries [][]Entry `json:"entries"`
	// Checksums per node: per partition, of offsets [First, Ends[p]).
	Checksums map[string][]walmq.PartitionChecksum `json:"checksums"`
	// Held per node: how far each partition reaches on it (its end
	// offset), which must not pass Ends.
	Held map[string][]uint64 `json:"held"`
	// NodeEntries: every node's replica of each partition, read from
	// offset 0 to Ends with Read (served by that node, never forwarded).
	NodeEntries map[string][][]Entry `json:"node_entries,omitempty"`
	// Refused lists, per node, the partitions whose Read was refused as
	// damaged (ErrCorrupt) until the end: refused loudly, not served.
	Refused map[string][]int `json:"refused,omitempty"`
	// Floors are the consumers' group's ack floors after the drain.
	Floors []uint64 `json:"floors,omitempty"`
	// Damage per node at the end: damaged segments not repaired, repairs.
	Damage map[string]NodeDamage `json:"damage,omitempty"`
	// Errors: what could not be read.
	Errors []string `json:"errors,omitempty"`
}

// NodeDamage is what a node's status says of its journals at the end.
type NodeDamage struct {
	Damaged  int    `json:"damaged"`
	Repaired uint64 `json:"repaired"`
}

// finalRead reads the topic back from the healthy cluster whose leader is
// leader, recording the reads in hist.
func finalRead(ctx context.Context, c *Cluster, leader string, hist *History) FinalRead {
	r := FinalRead{Nodes: c.IDs(), Entries: make([][]Entry, partitions),
		Checksums: map[string][]walmq.PartitionChecksum{}, Held: map[string][]uint64{}}
	fail := func(format string, args ...any) { r.Errors = append(r.Errors, fmt.Sprintf(format, args...)) }

	cl, err := walmq.Dial(ctx, c.DirectAddr(leader), walmq.DialOptions{RetryFor: 10 * time.Second})
	if err != nil {
		fail("dial %s: %v", leader, err)
		return r
	}
	defer cl.Close()
	if err := readAll(ctx, cl, &r); err != nil {
		fail("read through %s: %v", leader, err)
	}
	for p, es := range r.Entries {
		hist.Add(Op{Process: "reader", Node: leader, Type: Invoke, F: FRead, Partition: intPtr(p)})
		hist.Add(Op{Process: "reader", Node: leader, Type: OK, F: FRead, Partition: intPtr(p), Read: es})
	}
	if err := drain(ctx, cl, r.Ends, hist, leader); err != nil {
		fail("drain of group %s through %s: %v", consumeGroup, leader, err)
	}
	r.Floors = describeGroup(ctx, cl, hist, "final", leader)
	r.NodeEntries, r.Refused = map[string][][]Entry{}, map[string][]int{}
	for _, id := range c.IDs() {
		es, refused, err := readNode(ctx, c.admin[id], r.Ends)
		if err != nil {
			fail("read of %s's replica: %v", id, err)
		}
		r.NodeEntries[id] = es
		if len(refused) > 0 {
			r.Refused[id] = refused
		}
	}
	r.Damage = map[string]NodeDamage{}
	for _, id := range c.IDs() {
		if st, err := c.status(ctx, id); err == nil {
			r.Damage[id] = NodeDamage{Damaged: len(st.Damaged), Repaired: st.SegmentsRepaired}
		} else {
			fail("status of %s: %v", id, err)
		}
	}

	// Every replica, up to the leader's ends: each node waits until it
	// holds that far.
	for _, id := range c.IDs() {
		var (
			sum walmq.ChecksumResult
			err error
		)
		deadline := time.Now().Add(30 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			sum, err = c.admin[id].Checksum(cctx, topic, nil, r.Ends)
			cancel()
			if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			fail("checksum on %s: %v", id, err)
			continue
		}
		r.Checksums[id] = sum.Partitions
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		held, err := c.admin[id].Checksum(cctx, topic, nil, nil)
		cancel()
		if err != nil {
			fail("checksum of all on %s: %v", id, err)
			continue
		}
		for _, pc := range held.Partitions {
			r.Held[id] = append(r.Held[id], pc.Upto)
		}
	}
	return r
}

// readAll reads every partition from offset 0 to its end through cl with
// the consumer group made at the start, into r.Entries and r.Ends.
func readAll(ctx context.Context, cl *walmq.Client, r *FinalRead) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	seen := make([]map[uint64]bool, partitions)
	for p := range seen {
		seen[p] = map[uint64]bool{}
	}
	for {
		ti, err := cl.DescribeTopic(ctx, topic)
		if err != nil {
			return fmt.Errorf("describe topic: %w", err)
		}
		r.Ends = make([]uint64, partitions)
		complete := true
		for _, pi := range ti.Partitions {
			r.Ends[pi.Partition] = pi.NextOffset
			if pi.FirstOffset != 0 {
				return fmt.Errorf("partition %d starts at %d, not 0", pi.Partition, pi.FirstOffset)
			}
			complete = complete && uint64(len(seen[pi.Partition])) >= pi.NextOffset
		}
		if complete {
			break
		}
		ds, err := cl.Fetch(ctx, checkGroup, topic, 1000, 500*time.Millisecond)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				continue // nothing within the wait
			}
			return fmt.Errorf("fetch: %w", err)
		}
		var refs []walmq.Ref
		for _, d := range ds {
			refs = append(refs, d.Ref)
			if d.Partition < 0 || d.Partition >= partitions || seen[d.Partition][d.Offset] {
				continue
			}
			seen[d.Partition][d.Offset] = true
			e := Entry{Offset: d.Offset, Value: string(d.Payload)}
			if d.ID != e.Value {
				e.ID = d.ID
			}
			r.Entries[d.Partition] = append(r.Entries[d.Partition], e)
		}
		if len(refs) > 0 {
			if err := cl.Ack(ctx, refs...); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	for _, es := range r.Entries { // delivered in order, but make sure
		slices.SortFunc(es, func(a, b Entry) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	return nil
}

// drain fetches and acks the consumers' group through cl until its ack
// floor reaches ends on every partition, recording the fetches and acks
// as ops of the process "drain".
func drain(ctx context.Context, cl *walmq.Client, ends []uint64, hist *History, leader string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d := &consumer{name: "drain", node: leader, client: cl, hist: hist}
	for ctx.Err() == nil {
		ds, ok := d.fetch(ctx, 1000, 500*time.Millisecond)
		if ok && len(ds) > 0 {
			d.ack(ctx, ds)
			continue
		}
		dctx, dcancel := context.WithTimeout(ctx, callTimeout)
		gi, err := cl.DescribeGroup(dctx, topic, consumeGroup)
		dcancel()
		if err != nil {
			continue
		}
		done := len(gi.Partitions) == len(ends)
		for _, p := range gi.Partitions {
			done = done && p.Partition < len(ends) && p.AckFloor >= ends[p.Partition]
		}
		if done {
			return nil
		}
	}
	return ctx.Err()
}

// readNode reads every partition of the node cl talks to from offset 0 to
// ends, with Read (its own replica). A partition refused as damaged
// (ErrCorrupt) is retried for a while (the node repairs it from a peer);
// refused lists those still refused at the end.
func readNode(ctx context.Context, cl *walmq.Client, ends []uint64) (out [][]Entry, refused []int, err error) {
	out = make([][]Entry, len(ends))
	for p, end := range ends {
		deadline := time.Now().Add(30 * time.Second)
		for off := uint64(0); off < end; {
			rctx, cancel := context.WithTimeout(ctx, callTimeout)
			res, rerr := cl.Read(rctx, topic, p, off, 1000, 2*time.Second)
			cancel()
			if rerr != nil {
				if time.Now().After(deadline) || ctx.Err() != nil {
					if errors.Is(rerr, walmq.ErrCorrupt) {
						refused = append(refused, p)
						break
					}
					return out, refused, fmt.Errorf("partition %d from %d: %w", p, off, rerr)
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for _, rec := range res.Records {
				if rec.Offset >= end {
					break
				}
				out[p] = append(out[p], Entry{Offset: rec.Offset, Value: string(rec.Payload)})
			}
			if len(res.Records) > 0 {
				off = res.Records[len(res.Records)-1].Offset + 1
			} else if time.Now().After(deadline) || ctx.Err() != nil {
				return out, refused, fmt.Errorf("partition %d: holds up to offset %d, not %d (%s)", p, res.NextOffset, end, res.NodeID)
			}
		}
	}
	return out, refused, nil
}
