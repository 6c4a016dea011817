package walmq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

// Options configure an embedded broker. The zero value gives the defaults.
type Options struct {
	// Logger receives the broker's logs (default none).
	Logger hclog.Logger
	// SegmentBytes is the size of journal segments (default 64 MiB).
	SegmentBytes int64
	// MaxMessageBytes bounds key + id + headers + payload (default 1 MiB).
	MaxMessageBytes int
	// Linger is how long a publish batch waits for more messages
	// (default 0: each batch takes what is queued while the previous ones
	// commit).
	Linger time.Duration
	// CommitEvery and CommitMaxDelay batch acks: they are committed when
	// CommitEvery are pending (default 1024) or the oldest has waited
	// CommitMaxDelay (default 20 ms).
	CommitEvery    int
	CommitMaxDelay time.Duration
	// RetentionInterval is how often retention limits are enforced
	// (default 1 minute).
	RetentionInterval time.Duration
	// DefaultGroup configures groups that Fetch creates.
	DefaultGroup GroupConfig
	// StartTimeout bounds Open's recovery (default 1 minute).
	StartTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.CommitEvery <= 0 {
		o.CommitEvery = 1024
	}
	if o.CommitMaxDelay <= 0 {
		o.CommitMaxDelay = 20 * time.Millisecond
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = time.Minute
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Minute
	}
	return o
}

// Embedded is a broker running in this process on a data directory: a
// single-voter Raft group on the same code path as a cluster node.
type Embedded struct {
	opts Options
	log  hclog.Logger
	node *cluster.Node

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rr    atomic.Uint64 // round-robin partition for messages without a key
	acks  *acker
	close sync.Once
	err   error
}

var _ Broker = (*Embedded)(nil)

// Open opens (creating if needed) an embedded broker in dir. After a crash
// it recovers before returning: every acknowledged publish is there, and
// every message not recorded as settled will be delivered again.
func Open(dir string, opts Options) (*Embedded, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	node, err := cluster.Open(ctx, cluster.Config{
		Dir:             dir,
		Logger:          opts.Logger,
		Journal:         journal.Options{SegmentBytes: opts.SegmentBytes, Logger: opts.Logger.Named("journal")},
		MaxMessageBytes: opts.MaxMessageBytes,
		Linger:          opts.Linger,
	})
	if err != nil {
		return nil, err
	}
	e := &Embedded{opts: opts, log: opts.Logger, node: node}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.acks = newAcker(e)
	e.wg.Add(2)
	go e.acks.run()
	go e.retentionLoop()
	return e, nil
}

// Node is the underlying cluster node.
func (e *Embedded) Node() *cluster.Node { return e.node }

// Close commits pending acks and shuts the broker down.
func (e *Embedded) Close() error {
	e.close.Do(func() {
		e.cancel()
		e.wg.Wait()
		e.err = e.node.Close()
	})
	return e.err
}

func (e *Embedded) apply(ctx context.Context, cmd any) (any, error) {
	return e.node.Apply(ctx, cmd)
}

// CreateTopic implements Broker.
func (e *Embedded) CreateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	if !fsm.ValidName(name) {
		return fmt.Errorf("%w: topic %q", ErrInvalidName, name)
	}
	_, err := e.apply(ctx, &fsm.CreateTopic{Name: name, Config: cfg.internal()})
	return err
}

// UpdateTopic implements Broker.
func (e *Embedded) UpdateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	_, err := e.apply(ctx, &fsm.UpdateTopic{Name: name, Config: cfg.internal()})
	return err
}

// DeleteTopic implements Broker.
func (e *Embedded) DeleteTopic(ctx context.Context, name string) error {
	_, err := e.apply(ctx, &fsm.DeleteTopic{Name: name})
	return err
}

// Topics implements Broker.
func (e *Embedded) Topics(ctx context.Context) ([]TopicInfo, error) {
	var out []TopicInfo
	for _, name := range e.node.FSM().TopicNames() {
		ti, err := e.DescribeTopic(ctx, name)
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, ti)
	}
	return out, nil
}

// DescribeTopic implements Broker.
func (e *Embedded) DescribeTopic(_ context.Context, name string) (TopicInfo, error) {
	t, err := e.node.FSM().Topic(name)
	if err != nil {
		return TopicInfo{}, err
	}
	ti := TopicInfo{Name: t.Name, Config: TopicConfig{Partitions: t.Config.Partitions, MaxAge: t.Config.MaxAge,
		MaxBytes: t.Config.MaxBytes, DedupWindow: t.Config.DedupWindow}}
	for g := range t.Groups {
		ti.Groups = append(ti.Groups, g)
	}
	slices.Sort(ti.Groups)
	for i, p := range t.Partitions {
		ti.Partitions = append(ti.Partitions, PartitionInfo{Partition: i, FirstOffset: p.First, NextOffset: p.Next, Bytes: p.Bytes, Segments: p.Segments})
	}
	return ti, nil
}

func toJournal(msgs []Message) []journal.Message {
	out := make([]journal.Message, len(msgs))
	for i, m := range msgs {
		out[i] = journal.Message{Key: m.Key, ID: m.ID, Headers: m.Headers, Payload: m.Payload}
		if !m.Timestamp.IsZero() {
			out[i].Timestamp = m.Timestamp.UnixNano()
		}
	}
	return out
}

// Publish implements Broker.
func (e *Embedded) Publish(ctx context.Context, topic string, msgs ...Message) ([]PublishAck, error) {
	if len(msgs) == 0 {
		return nil, ErrEmptyPublish
	}
	n, err := e.node.FSM().PartitionCount(topic)
	if err != nil {
		return nil, err
	}
	// Group the messages by partition, keeping each one's position.
	byPart := map[int][]int{}
	keyless := -1
	for i, m := range msgs {
		var p int
		if m.Key != nil {
			p = PartitionForKey(m.Key, n)
		} else {
			if keyless < 0 {
				keyless = int(e.rr.Add(1) % uint64(n))
			}
			p = keyless
		}
		byPart[p] = append(byPart[p], i)
	}
	acks := make([]PublishAck, len(msgs))
	if len(byPart) == 1 {
		for p := range byPart {
			return e.PublishTo(ctx, topic, p, msgs...)
		}
	}
	type result struct {
		idx  []int
		acks []PublishAck
		err  error
	}
	results := make(chan result, len(byPart))
	for p, idx := range byPart {
		part := make([]Message, len(idx))
		for k, i := range idx {
			part[k] = msgs[i]
		}
		go func() {
			a, err := e.PublishTo(ctx, topic, p, part...)
			results <- result{idx, a, err}
		}()
	}
	var firstErr error
	for range byPart {
		r := <-results
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		for k, i := range r.idx {
			acks[i] = r.acks[k]
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return acks, nil
}

// PublishTo implements Broker.
func (e *Embedded) PublishTo(ctx context.Context, topic string, partition int, msgs ...Message) ([]PublishAck, error) {
	if len(msgs) == 0 {
		return nil, ErrEmptyPublish
	}
	if _, err := e.node.FSM().Partition(topic, partition); err != nil {
		return nil, err
	}
	res, err := e.node.Publish(ctx, topic, partition, toJournal(msgs))
	if err != nil {
		return nil, err
	}
	return toAcks(res, len(msgs)), nil
}

// PublishAsync implements Broker.
func (e *Embedded) PublishAsync(ctx context.Context, topic string, partition int, msgs []Message, done func([]PublishAck, error)) error {
	if _, err := e.node.FSM().Partition(topic, partition); err != nil {
		return err
	}
	n := len(msgs)
	return e.node.PublishAsync(ctx, topic, partition, toJournal(msgs), func(res *fsm.PublishResult, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		done(toAcks(res, n), nil)
	})
}

func toAcks(res *fsm.PublishResult, n int) []PublishAck {
	acks := make([]PublishAck, n)
	for i := range acks {
		acks[i] = PublishAck{Partition: res.Partitions[i], Offset: res.Offsets[i], Duplicate: res.Duplicate[i]}
	}
	return acks
}

// CreateGroup implements Broker.
func (e *Embedded) CreateGroup(ctx context.Context, topic, group string, cfg GroupConfig) error {
	if !fsm.ValidName(group) {
		return fmt.Errorf("%w: group %q", ErrInvalidName, group)
	}
	t, err := e.node.FSM().Topic(topic)
	if err != nil {
		return err
	}
	start := make([]uint64, len(t.Partitions))
	for i, p := range t.Partitions {
		start[i] = p.First
		if cfg.StartAt == StartLatest {
			start[i] = p.Next
		}
	}
	_, err = e.apply(ctx, &fsm.CreateGroup{Topic: topic, Group: group, Config: cfg.internal(), Start: start})
	return err
}

// DeleteGroup implements Broker.
func (e *Embedded) DeleteGroup(ctx context.Context, topic, group string) error {
	_, err := e.apply(ctx, &fsm.DeleteGroup{Topic: topic, Group: group})
	return err
}

// Groups implements Broker.
func (e *Embedded) Groups(ctx context.Context, topic string) ([]string, error) {
	ti, err := e.DescribeTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	return ti.Groups, nil
}

// DescribeGroup implements Broker.
func (e *Embedded) DescribeGroup(_ context.Context, topic, group string) (GroupInfo, error) {
	t, err := e.node.FSM().Topic(topic)
	if err != nil {
		return GroupInfo{}, err
	}
	cfg, ok := t.Groups[group]
	if !ok {
		return GroupInfo{}, fmt.Errorf("%w: %q on topic %q", ErrGroupNotFound, group, topic)
	}
	gi := GroupInfo{Topic: topic, Group: group, Config: GroupConfig{AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, DeadLetterTopic: cfg.DeadLetterTopic}}
	for i := range t.Partitions {
		p, err := e.node.FSM().Partition(topic, i)
		if err != nil {
			return GroupInfo{}, err
		}
		floor, settled, err := p.GroupState(group)
		if err != nil {
			return GroupInfo{}, fmt.Errorf("%w: %w", ErrGroupNotFound, err)
		}
		lag, _ := p.Pending(group)
		gi.Partitions = append(gi.Partitions, GroupPartitionInfo{Partition: i, AckFloor: floor,
			EndOffset: p.Watermark(), Lag: lag, Pending: p.Leased(group)})
		_ = settled
	}
	return gi, nil
}

// ResetGroup implements Broker.
func (e *Embedded) ResetGroup(ctx context.Context, topic, group string, to ResetTo) error {
	t, err := e.node.FSM().Topic(topic)
	if err != nil {
		return err
	}
	if _, ok := t.Groups[group]; !ok {
		return fmt.Errorf("%w: %q on topic %q", ErrGroupNotFound, group, topic)
	}
	offsets := make([]uint64, len(t.Partitions))
	for i, pi := range t.Partitions {
		off := to.Offset
		if !to.Time.IsZero() {
			p, err := e.node.FSM().Partition(topic, i)
			if err != nil {
				return err
			}
			if off, err = p.Journal().OffsetForTime(to.Time.UnixNano()); err != nil {
				return err
			}
		}
		offsets[i] = min(max(off, pi.First), pi.Next)
	}
	_, err = e.apply(ctx, &fsm.ResetGroup{Topic: topic, Group: group, Offsets: offsets})
	return err
}

// ensureGroup returns a group's configuration, creating the group with the
// default configuration if it does not exist.
func (e *Embedded) ensureGroup(ctx context.Context, topic, group string) (fsm.GroupConfig, int, error) {
	t, err := e.node.FSM().Topic(topic)
	if err != nil {
		return fsm.GroupConfig{}, 0, err
	}
	if cfg, ok := t.Groups[group]; ok {
		return cfg, len(t.Partitions), nil
	}
	if err := e.CreateGroup(ctx, topic, group, e.opts.DefaultGroup); err != nil && !errors.Is(err, ErrGroupExists) {
		return fsm.GroupConfig{}, 0, err
	}
	t, err = e.node.FSM().Topic(topic)
	if err != nil {
		return fsm.GroupConfig{}, 0, err
	}
	cfg, ok := t.Groups[group]
	if !ok {
		return fsm.GroupConfig{}, 0, fmt.Errorf("%w: %q on topic %q", ErrGroupNotFound, group, topic)
	}
	return cfg, len(t.Partitions), nil
}

// Fetch implements Broker.
func (e *Embedded) Fetch(ctx context.Context, group, topic string, max int, wait time.Duration) ([]Delivery, error) {
	if max <= 0 {
		return nil, fmt.Errorf("%w: max %d must be positive", ErrInvalidArgument, max)
	}
	cfg, nparts, err := e.ensureGroup(ctx, topic, group)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	start := int(e.rr.Add(1) % uint64(nparts))
	for {
		var out []Delivery
		var parts []*partition.Partition
		for k := 0; k < nparts && len(out) < max; k++ {
			pi := (start + k) % nparts
			p, err := e.node.FSM().Partition(topic, pi)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
			ds, err := p.Lease(group, time.Now(), cfg.AckWait, max-len(out), 0)
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				if cfg.MaxDeliver > 0 && int(d.Deliveries) > cfg.MaxDeliver {
					e.deadLetter(ctx, topic, group, pi, p, d)
					continue
				}
				out = append(out, toDelivery(group, topic, pi, d))
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return nil, nil
		}
		if err := e.waitAny(ctx, parts, group, deadline); err != nil {
			return nil, err
		}
	}
}

// waitAny waits until a partition gets a new message, until a lease may
// have expired (checked every 50 ms while the group has leases), or until
// the deadline.
func (e *Embedded) waitAny(ctx context.Context, parts []*partition.Partition, group string, deadline time.Time) error {
	until := deadline
	leased := false
	for _, p := range parts {
		if p.Leased(group) > 0 {
			leased = true
		}
	}
	if leased {
		until = minTime(until, time.Now().Add(50*time.Millisecond))
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	done := make(chan struct{}, len(parts))
	for _, p := range parts {
		after := p.Watermark()
		go func() {
			p.Wait(wctx, after)
			done <- struct{}{}
		}()
	}
	select {
	case <-done:
	case <-wctx.Done():
	case <-e.ctx.Done():
		cancel()
		return ErrClosed
	}
	cancel()
	for range parts[1:] {
		<-done
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func toDelivery(group, topic string, part int, d partition.Delivery) Delivery {
	return Delivery{
		Ref:        Ref{Group: group, Topic: topic, Partition: part, Offset: d.Offset},
		Key:        d.Key,
		Headers:    d.Headers,
		Payload:    d.Payload,
		ID:         d.ID,
		Timestamp:  time.Unix(0, d.Timestamp),
		Deliveries: d.Deliveries,
	}
}

// deadLetter moves a message past MaxDeliver to the dead-letter topic.
// On failure the lease stays, and a later fetch tries again.
func (e *Embedded) deadLetter(ctx context.Context, topic, group string, pi int, p *partition.Partition, d partition.Delivery) {
	reason := fmt.Sprintf("delivered %d times without being settled", d.Deliveries-1)
	_, err := e.apply(ctx, &fsm.DeadLetter{Topic: topic, Group: group, Partition: pi, Offset: d.Offset,
		Deliveries: d.Deliveries - 1, Reason: reason, Timestamp: time.Now().UnixNano(), Message: d.Message})
	if err != nil {
		e.log.Warn("dead-lettering failed", "topic", topic, "group", group, "partition", pi, "offset", d.Offset, "error", err)
		return
	}
	if err := p.Release(group, []uint64{d.Offset}); err != nil {
		e.log.Debug("release after dead-letter", "error", err)
	}
}

// Ack implements Broker.
func (e *Embedded) Ack(ctx context.Context, refs ...Ref) error {
	return e.settle(ctx, refs)
}

// Term implements Broker.
func (e *Embedded) Term(ctx context.Context, reason string, refs ...Ref) error {
	if err := e.settle(ctx, refs); err != nil {
		return err
	}
	for _, r := range refs {
		e.log.Info("message terminated", "topic", r.Topic, "group", r.Group, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	}
	return nil
}

// settle releases the leases of refs (all or none per partition) and
// queues them for the next ack commit.
func (e *Embedded) settle(_ context.Context, refs []Ref) error {
	for key, offs := range groupRefs(refs) {
		p, err := e.node.FSM().Partition(key.topic, key.part)
		if err != nil {
			return err
		}
		if err := p.Release(key.group, offs); err != nil {
			return groupErr(err)
		}
		e.acks.add(key, offs)
	}
	return nil
}

// Nack implements Broker.
func (e *Embedded) Nack(_ context.Context, delay time.Duration, refs ...Ref) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay", ErrInvalidArgument)
	}
	for key, offs := range groupRefs(refs) {
		p, err := e.node.FSM().Partition(key.topic, key.part)
		if err != nil {
			return err
		}
		if err := p.Nack(key.group, offs, time.Now(), delay); err != nil {
			return groupErr(err)
		}
	}
	return nil
}

// groupErr gives a partition's unknown-group error the public sentinel.
func groupErr(err error) error {
	if errors.Is(err, partition.ErrUnknownGroup) {
		return fmt.Errorf("%w: %w", ErrGroupNotFound, err)
	}
	return err
}

type refKey struct {
	group, topic string
	part         int
}

func groupRefs(refs []Ref) map[refKey][]uint64 {
	out := map[refKey][]uint64{}
	for _, r := range refs {
		k := refKey{r.Group, r.Topic, r.Partition}
		out[k] = append(out[k], r.Offset)
	}
	return out
}

// retentionLoop enforces every topic's retention limits through Raft
// commands, so every replica deletes the same segments.
func (e *Embedded) retentionLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			if err := e.EnforceRetention(e.ctx); err != nil && e.ctx.Err() == nil {
				e.log.Warn("retention", "error", err)
			}
		}
	}
}

// EnforceRetention deletes, now, the segments that topics' retention
// limits no longer keep. The broker does it every RetentionInterval.
func (e *Embedded) EnforceRetention(ctx context.Context) error {
	f := e.node.FSM()
	for _, name := range f.TopicNames() {
		t, err := f.Topic(name)
		if err != nil || (t.Config.MaxAge == 0 && t.Config.MaxBytes == 0) {
			continue
		}
		before := make([]uint64, len(t.Partitions))
		any := false
		for i, pi := range t.Partitions {
			p, err := f.Partition(name, i)
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
			any = any || cut > pi.First
		}
		if !any {
			continue
		}
		if _, err := e.apply(ctx, &fsm.Retention{Topic: name, Before: before}); err != nil {
			return err
		}
	}
	return nil
}
