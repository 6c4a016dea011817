package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/partition"
)

// ErrInvalidArgument: a bad argument no other error describes.
var ErrInvalidArgument = errors.New("walmq: invalid argument")

// Delivery is a message leased to a consumer of a group.
type Delivery struct {
	Partition int
	partition.Delivery
}

// GroupInfo is a group's configuration and progress.
type GroupInfo struct {
	Config     fsm.GroupConfig
	Partitions []GroupPartition
}

// GroupPartition is a group's progress on one partition.
type GroupPartition struct {
	Partition int
	AckFloor  uint64 // every offset below is settled
	EndOffset uint64 // the partition's next offset
	Lag       uint64 // unsettled offsets in [AckFloor, EndOffset)
	Pending   int    // delivered and not yet settled
}

// CreateGroup creates a consumer group starting at the first retained
// message of each partition, or at the next one when latest is set.
func (n *Node) CreateGroup(ctx context.Context, topic, group string, cfg fsm.GroupConfig, latest bool) error {
	if !fsm.ValidName(group) {
		return fmt.Errorf("%w: group %q", fsm.ErrInvalidName, group)
	}
	t, err := n.fsm.Topic(topic)
	if err != nil {
		return err
	}
	start := make([]uint64, len(t.Partitions))
	for i, p := range t.Partitions {
		start[i] = p.First
		if latest {
			start[i] = p.Next
		}
	}
	_, err = n.Apply(ctx, &fsm.CreateGroup{Topic: topic, Group: group, Config: cfg, Start: start})
	return err
}

// DescribeGroup returns a group's configuration and progress.
func (n *Node) DescribeGroup(topic, group string) (GroupInfo, error) {
	t, err := n.fsm.Topic(topic)
	if err != nil {
		return GroupInfo{}, err
	}
	cfg, ok := t.Groups[group]
	if !ok {
		return GroupInfo{}, fmt.Errorf("%w: %q on topic %q", fsm.ErrGroupNotFound, group, topic)
	}
	gi := GroupInfo{Config: cfg}
	for i := range t.Partitions {
		p, err := n.fsm.Partition(topic, i)
		if err != nil {
			return GroupInfo{}, err
		}
		floor, _, err := p.GroupState(group)
		if err != nil {
			return GroupInfo{}, groupErr(err)
		}
		lag, _ := p.Pending(group)
		gi.Partitions = append(gi.Partitions, GroupPartition{Partition: i, AckFloor: floor,
			EndOffset: p.Watermark(), Lag: lag, Pending: p.Leased(group)})
	}
	return gi, nil
}

// ResetGroup moves a group, on every partition, to offset, or when at is
// not zero to the first message stamped at or after it, clamped to what
// is retained.
func (n *Node) ResetGroup(ctx context.Context, topic, group string, offset uint64, at time.Time) error {
	t, err := n.fsm.Topic(topic)
	if err != nil {
		return err
	}
	if _, ok := t.Groups[group]; !ok {
		return fmt.Errorf("%w: %q on topic %q", fsm.ErrGroupNotFound, group, topic)
	}
	offsets := make([]uint64, len(t.Partitions))
	for i, pi := range t.Partitions {
		off := offset
		if !at.IsZero() {
			p, err := n.fsm.Partition(topic, i)
			if err != nil {
				return err
			}
			if off, err = p.Journal().OffsetForTime(at.UnixNano()); err != nil {
				return err
			}
		}
		offsets[i] = min(max(off, pi.First), pi.Next)
	}
	_, err = n.Apply(ctx, &fsm.ResetGroup{Topic: topic, Group: group, Offsets: offsets})
	return err
}

// ensureGroup returns a group's configuration, creating the group with
// Config.DefaultGroup if it does not exist.
func (n *Node) ensureGroup(ctx context.Context, topic, group string) (fsm.GroupConfig, int, error) {
	t, err := n.fsm.Topic(topic)
	if err != nil {
		return fsm.GroupConfig{}, 0, err
	}
	if cfg, ok := t.Groups[group]; ok {
		return cfg, len(t.Partitions), nil
	}
	if err := n.CreateGroup(ctx, topic, group, n.cfg.DefaultGroup, false); err != nil && !errors.Is(err, fsm.ErrGroupExists) {
		return fsm.GroupConfig{}, 0, err
	}
	if t, err = n.fsm.Topic(topic); err != nil {
		return fsm.GroupConfig{}, 0, err
	}
	cfg, ok := t.Groups[group]
	if !ok {
		return fsm.GroupConfig{}, 0, fmt.Errorf("%w: %q on topic %q", fsm.ErrGroupNotFound, group, topic)
	}
	return cfg, len(t.Partitions), nil
}

// Fetch leases up to max messages of topic to a consumer of group, waiting
// up to wait for at least one. A group that does not exist is created with
// Config.DefaultGroup. A message past its group's MaxDeliver is moved to
// the dead-letter topic instead of being delivered.
func (n *Node) Fetch(ctx context.Context, group, topic string, max int, wait time.Duration) ([]Delivery, error) {
	if max <= 0 {
		return nil, fmt.Errorf("%w: max %d must be positive", ErrInvalidArgument, max)
	}
	if err := n.usable(); err != nil {
		return nil, err
	}
	cfg, nparts, err := n.ensureGroup(ctx, topic, group)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	start := int(n.rr.Add(1) % uint64(nparts))
	parts := make([]*partition.Partition, 0, nparts)
	marks := make([]uint64, 0, nparts)
	for {
		var out []Delivery
		parts, marks = parts[:0], marks[:0]
		for k := 0; k < nparts && len(out) < max; k++ {
			pi := (start + k) % nparts
			p, err := n.fsm.Partition(topic, pi)
			if err != nil {
				return nil, err
			}
			// The watermark before leasing: a message committed after it
			// wakes the wait below.
			parts, marks = append(parts, p), append(marks, p.Watermark())
			ds, err := p.Lease(group, time.Now(), cfg.AckWait, max-len(out), 0)
			if err != nil {
				return nil, groupErr(err)
			}
			for _, d := range ds {
				if cfg.MaxDeliver > 0 && int(d.Deliveries) > cfg.MaxDeliver {
					n.deadLetter(ctx, topic, group, pi, p, d)
					continue
				}
				out = append(out, Delivery{Partition: pi, Delivery: d})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if !time.Now().Before(deadline) {
			return nil, nil
		}
		if err := n.waitAny(ctx, parts, marks, group, deadline); err != nil {
			return nil, err
		}
	}
}

// leasePoll is how often a waiting Fetch looks for expired leases.
const leasePoll = 50 * time.Millisecond

// waitAny waits until a partition gets a new message, until a lease may
// have expired (checked every leasePoll while the group has leases), or
// until the deadline.
func (n *Node) waitAny(ctx context.Context, parts []*partition.Partition, marks []uint64, group string, deadline time.Time) error {
	until := deadline
	for _, p := range parts {
		if p.Leased(group) > 0 {
			until = minTime(until, time.Now().Add(leasePoll))
			break
		}
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	done := make(chan struct{}, len(parts))
	for i, p := range parts {
		after := marks[i]
		go func() {
			p.Wait(wctx, after)
			done <- struct{}{}
		}()
	}
	closed := false
	select {
	case <-done:
	case <-wctx.Done():
	case <-n.ctx.Done():
		closed = true
	}
	cancel()
	for range parts[1:] {
		<-done
	}
	if closed {
		return ErrClosed
	}
	return ctx.Err()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// deadLetter moves a message past MaxDeliver to the dead-letter topic and
// settles it, in one command. On failure the lease stays, and a later
// fetch tries again.
func (n *Node) deadLetter(ctx context.Context, topic, group string, pi int, p *partition.Partition, d partition.Delivery) {
	reason := fmt.Sprintf("delivered %d times without being settled", d.Deliveries-1)
	_, err := n.Apply(ctx, &fsm.DeadLetter{Topic: topic, Group: group, Partition: pi, Offset: d.Offset,
		Deliveries: d.Deliveries - 1, Reason: reason, Timestamp: time.Now().UnixNano(), Message: d.Message})
	if err != nil {
		n.log.Warn("dead-lettering failed", "topic", topic, "group", group, "partition", pi, "offset", d.Offset, "error", err)
		return
	}
	n.log.Info("message dead-lettered", "topic", topic, "group", group, "partition", pi, "offset", d.Offset, "reason", reason)
}

// Ack settles delivered offsets of one partition: all of them or, if one
// is not pending for the group, none. The settle reaches Raft with the
// next ack commit (CommitEvery / CommitMaxDelay); until then a crash
// delivers the messages again.
func (n *Node) Ack(group, topic string, part int, offsets []uint64) error {
	p, err := n.fsm.Partition(topic, part)
	if err != nil {
		return err
	}
	if err := p.Release(group, offsets); err != nil {
		return groupErr(err)
	}
	n.acks.add(group, topic, part, offsets)
	return nil
}

// Nack makes delivered offsets of one partition available again after
// delay.
func (n *Node) Nack(group, topic string, part int, offsets []uint64, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay", ErrInvalidArgument)
	}
	p, err := n.fsm.Partition(topic, part)
	if err != nil {
		return err
	}
	return groupErr(p.Nack(group, offsets, time.Now(), delay))
}

// groupErr gives a partition's unknown-group error the public sentinel.
func groupErr(err error) error {
	if errors.Is(err, partition.ErrUnknownGroup) {
		return fmt.Errorf("%w: %w", fsm.ErrGroupNotFound, err)
	}
	return err
}

// CommitAcks commits every ack made so far and returns once they are
// durable.
func (n *Node) CommitAcks(ctx context.Context) error { return n.acks.flush(ctx) }

// retentionLoop enforces the topics' retention limits every
// RetentionInterval.
func (n *Node) retentionLoop() {
	defer n.bg.Done()
	t := time.NewTicker(n.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-n.bgCtx.Done():
			return
		case <-t.C:
			if !n.IsLeader() {
				continue // the leader chooses the cutoffs
			}
			if err := n.EnforceRetention(n.bgCtx); err != nil && n.bgCtx.Err() == nil {
				n.log.Warn("retention", "error", err)
			}
		}
	}
}

// EnforceRetention deletes now the segments that the topics' retention
// limits no longer keep. The cutoffs are chosen here, on the leader, and
// applied through Raft, so every replica deletes the same segments.
func (n *Node) EnforceRetention(ctx context.Context) error {
	for _, name := range n.fsm.TopicNames() {
		t, err := n.fsm.Topic(name)
		if err != nil || (t.Config.MaxAge == 0 && t.Config.MaxBytes == 0) {
			continue
		}
		before := make([]uint64, len(t.Partitions))
		due := false
		for i, pi := range t.Partitions {
			p, err := n.fsm.Partition(name, i)
			if err != nil {
				return err
			}
			cut := pi.First
			if t.Config.MaxAge > 0 {
				cut = max(cut, p.Journal().AgeCutoff(time.Now().Add(-t.Config.MaxAge).UnixNano()))
			}
			if t.Config.MaxBytes > 0 {
				cut = max(cut, p.Journal().SizeCutoff(t.Config.MaxBytes))
			}
			before[i] = cut
			due = due || cut > pi.First
		}
		if !due {
			continue
		}
		if _, err := n.Apply(ctx, &fsm.Retention{Topic: name, Before: before}); err != nil {
			return err
		}
	}
	return nil
}

// PartitionForKey is the partition a key goes to among n: FNV-1a (32 bit)
// of the key, modulo n. It never changes, so a key's messages stay in
// order in one partition.
func PartitionForKey(key []byte, n int) int {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % uint32(n))
}

// Route groups the indexes of messages with the given keys by partition
// among n: a message with a key goes to its key's partition, keyless ones
// together to the next partition in turn. order lists the partitions in
// the order first used.
func (n *Node) Route(keys [][]byte, parts int) (byPart map[int][]int, order []int) {
	byPart = map[int][]int{}
	keyless := -1
	for i, k := range keys {
		var p int
		if k != nil {
			p = PartitionForKey(k, parts)
		} else {
			if keyless < 0 {
				keyless = int(n.pubRR.Add(1) % uint64(parts))
			}
			p = keyless
		}
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], i)
	}
	return byPart, order
}
