package walmq

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
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

	// NodeID names this node (default "node1"). RaftAddr, RaftAdvertise
	// and Peers make it a member of a cluster (see cluster.Config): then
	// Open returns without waiting for a leader, and writes on a follower
	// fail with ErrNotLeader. Empty: a single node.
	NodeID        string
	RaftAddr      string
	RaftAdvertise string
	Peers         []Peer
	// NoBootstrap: a new data directory waits to be added to a running
	// cluster instead of electing itself (see cluster.Config).
	NoBootstrap bool
	// ScrubInterval is how often every sealed journal segment is verified
	// again after the pass that follows Open (default 24 h; negative:
	// only that pass); ScrubBytesPerSecond bounds the reading (default 64
	// MiB/s). Damaged segments are repaired from peers (see cluster.Config).
	ScrubInterval       time.Duration
	ScrubBytesPerSecond int64
	// SyncLeaderLog makes a leader write its raft log before it
	// replicates instead of in parallel with its followers (see
	// cluster.Config).
	SyncLeaderLog bool
}

// Peer is one server of a cluster: its node id and Raft address.
type Peer = cluster.Peer

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
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
		Dir:                 dir,
		Logger:              opts.Logger,
		Journal:             journal.Options{SegmentBytes: opts.SegmentBytes, Logger: opts.Logger.Named("journal")},
		MaxMessageBytes:     opts.MaxMessageBytes,
		Linger:              opts.Linger,
		CommitEvery:         opts.CommitEvery,
		CommitMaxDelay:      opts.CommitMaxDelay,
		RetentionInterval:   opts.RetentionInterval,
		DefaultGroup:        opts.DefaultGroup.internal(),
		NodeID:              opts.NodeID,
		RaftAddr:            opts.RaftAddr,
		RaftAdvertise:       opts.RaftAdvertise,
		Peers:               opts.Peers,
		NoBootstrap:         opts.NoBootstrap,
		ScrubInterval:       opts.ScrubInterval,
		ScrubBytesPerSecond: opts.ScrubBytesPerSecond,
		SyncLeaderLog:       opts.SyncLeaderLog,
	})
	if err != nil {
		return nil, err
	}
	return &Embedded{opts: opts, log: opts.Logger, node: node}, nil
}

// Node is the underlying cluster node.
func (e *Embedded) Node() *cluster.Node { return e.node }

// Close commits pending acks and shuts the broker down.
func (e *Embedded) Close() error {
	e.close.Do(func() { e.err = e.node.Close() })
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
	keys := make([][]byte, len(msgs))
	for i := range msgs {
		keys[i] = msgs[i].Key
	}
	byPart, _ := e.node.Route(keys, n)
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
	return e.node.CreateGroup(ctx, topic, group, cfg.internal(), cfg.StartAt == StartLatest)
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
	gi, err := e.node.DescribeGroup(topic, group)
	if err != nil {
		return GroupInfo{}, err
	}
	out := GroupInfo{Topic: topic, Group: group, Config: GroupConfig{AckWait: gi.Config.AckWait,
		MaxDeliver: gi.Config.MaxDeliver, DeadLetterTopic: gi.Config.DeadLetterTopic}}
	for _, p := range gi.Partitions {
		out.Partitions = append(out.Partitions, GroupPartitionInfo(p))
	}
	return out, nil
}

// ResetGroup implements Broker.
func (e *Embedded) ResetGroup(ctx context.Context, topic, group string, to ResetTo) error {
	return e.node.ResetGroup(ctx, topic, group, to.Offset, to.Time)
}

// Fetch implements Broker.
func (e *Embedded) Fetch(ctx context.Context, group, topic string, max int, wait time.Duration) ([]Delivery, error) {
	ds, err := e.node.Fetch(ctx, group, topic, max, wait)
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, len(ds))
	for i, d := range ds {
		out[i] = Delivery{
			Ref:        Ref{Group: group, Topic: topic, Partition: d.Partition, Offset: d.Offset},
			Key:        d.Key,
			Headers:    d.Headers,
			Payload:    d.Payload,
			ID:         d.ID,
			Timestamp:  time.Unix(0, d.Timestamp),
			Deliveries: d.Deliveries,
		}
	}
	return out, nil
}

// Ack implements Broker.
func (e *Embedded) Ack(_ context.Context, refs ...Ref) error {
	for k, offs := range groupRefs(refs) {
		if err := e.node.Ack(k.group, k.topic, k.part, offs); err != nil {
			return err
		}
	}
	return nil
}

// Read implements Broker.
func (e *Embedded) Read(ctx context.Context, topic string, partition int, offset uint64, max int, wait time.Duration) (ReadResult, error) {
	res, err := e.node.Read(ctx, topic, partition, offset, max, 0, wait)
	if err != nil {
		return ReadResult{}, err
	}
	out := ReadResult{NodeID: e.node.NodeID(), FirstOffset: res.First, NextOffset: res.Next, Records: make([]Record, len(res.Messages))}
	for i, m := range res.Messages {
		out.Records[i] = Record{Partition: partition, Offset: m.Offset, Key: m.Key, Headers: m.Headers, Payload: m.Payload,
			ID: m.ID, Timestamp: time.Unix(0, m.Timestamp)}
	}
	return out, nil
}

// Term implements Broker.
func (e *Embedded) Term(ctx context.Context, reason string, refs ...Ref) error {
	if err := e.Ack(ctx, refs...); err != nil {
		return err
	}
	for _, r := range refs {
		e.log.Info("message terminated", "topic", r.Topic, "group", r.Group, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	}
	return nil
}

// Nack implements Broker.
func (e *Embedded) Nack(_ context.Context, delay time.Duration, refs ...Ref) error {
	for k, offs := range groupRefs(refs) {
		if err := e.node.Nack(k.group, k.topic, k.part, offs, delay); err != nil {
			return err
		}
	}
	return nil
}

// CommitAcks commits every ack made so far and returns once they are
// durable.
func (e *Embedded) CommitAcks(ctx context.Context) error { return e.node.CommitAcks(ctx) }

// EnforceRetention deletes, now, the segments that topics' retention
// limits no longer keep. The broker does it every RetentionInterval.
func (e *Embedded) EnforceRetention(ctx context.Context) error { return e.node.EnforceRetention(ctx) }

type refKey struct {
	group, topic string
	part         int
}

// groupRefs groups refs by group, topic and partition, in the order
// first seen.
func groupRefs(refs []Ref) map[refKey][]uint64 {
	out := map[refKey][]uint64{}
	for _, r := range refs {
		k := refKey{r.Group, r.Topic, r.Partition}
		out[k] = append(out[k], r.Offset)
	}
	return out
}
