package walmq

import (
	"context"
	"time"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
	"github.com/walmq/walmq/transport"
)

// Broker is walmq's API. Open returns the embedded implementation; every
// method takes a context that bounds how long it may block.
type Broker interface {
	// CreateTopic creates a topic. Names are 1-200 letters, digits, '.',
	// '_' or '-'.
	CreateTopic(ctx context.Context, name string, cfg TopicConfig) error
	// UpdateTopic changes a topic's retention and dedup window.
	UpdateTopic(ctx context.Context, name string, cfg TopicConfig) error
	// DeleteTopic deletes a topic with its messages and groups.
	DeleteTopic(ctx context.Context, name string) error
	// Topics lists the topics.
	Topics(ctx context.Context) ([]TopicInfo, error)
	// DescribeTopic describes one topic.
	DescribeTopic(ctx context.Context, name string) (TopicInfo, error)

	// Publish stores messages and returns, in order, where each was
	// stored, once that is durable. A message with a key goes to the
	// partition its key hashes to (see PartitionForKey); messages without
	// one go together to the next partition in turn.
	Publish(ctx context.Context, topic string, msgs ...Message) ([]PublishAck, error)
	// PublishTo stores messages in one partition.
	PublishTo(ctx context.Context, topic string, partition int, msgs ...Message) ([]PublishAck, error)
	// PublishAsync queues messages for one partition and returns at once;
	// done is called once with the outcome, from another goroutine, and
	// must not block. Messages of PublishAsync calls made one after the
	// other are stored in that order. It blocks only while the partition's
	// queue is full; an error it returns means done will not be called.
	PublishAsync(ctx context.Context, topic string, partition int, msgs []Message, done func([]PublishAck, error)) error

	// CreateGroup creates a consumer group of a topic.
	CreateGroup(ctx context.Context, topic, group string, cfg GroupConfig) error
	// DeleteGroup deletes a consumer group.
	DeleteGroup(ctx context.Context, topic, group string) error
	// Groups lists the groups of a topic.
	Groups(ctx context.Context, topic string) ([]string, error)
	// DescribeGroup gives a group's progress on each partition.
	DescribeGroup(ctx context.Context, topic, group string) (GroupInfo, error)
	// ResetGroup moves a group to an offset or a time on every partition.
	ResetGroup(ctx context.Context, topic, group string, to ResetTo) error

	// Fetch leases up to max messages of a topic to a consumer of group,
	// waiting up to wait for at least one. A group that does not exist is
	// created with the broker's default group configuration. Each message
	// must be settled with Ack, Nack or Term before its AckWait runs out,
	// or it is delivered again.
	Fetch(ctx context.Context, group, topic string, max int, wait time.Duration) ([]Delivery, error)
	// Ack settles delivered messages: they are never delivered to the
	// group again once the ack is committed (acks are committed in
	// batches; an ack not yet committed when the broker crashes is
	// redelivered).
	Ack(ctx context.Context, refs ...Ref) error
	// Nack gives delivered messages back, to be delivered again after
	// delay.
	Nack(ctx context.Context, delay time.Duration, refs ...Ref) error
	// Term settles delivered messages that must not be delivered again,
	// for reason (logged), without processing them.
	Term(ctx context.Context, reason string, refs ...Ref) error

	// Read returns up to max committed messages of one partition from
	// offset on, waiting up to wait for one at offset when there is none
	// yet. It needs no group and settles nothing. An offset deleted by
	// retention is ErrOffsetTruncated. A Client reads the replica of the
	// node it talks to, which may lag the leader: a follower serves what it
	// has applied, never more than is committed.
	Read(ctx context.Context, topic string, partition int, offset uint64, max int, wait time.Duration) (ReadResult, error)
	// Close shuts the broker down: pending acks are committed first.
	Close() error
}

// Errors. Test them with errors.Is.
var (
	ErrInvalidName     = fsm.ErrInvalidName
	ErrInvalidConfig   = fsm.ErrInvalidConfig
	ErrTopicNotFound   = fsm.ErrTopicNotFound
	ErrTopicExists     = fsm.ErrTopicExists
	ErrPartitionRange  = fsm.ErrPartitionRange
	ErrGroupNotFound   = fsm.ErrGroupNotFound
	ErrGroupExists     = fsm.ErrGroupExists
	ErrMessageTooLarge = fsm.ErrMessageTooLarge
	ErrEmptyPublish    = fsm.ErrEmptyPublish
	ErrFailed          = fsm.ErrFailed
	ErrNotLeader       = cluster.ErrNotLeader
	// ErrQuorum: a membership change would leave the voters without a
	// quorum.
	ErrQuorum = cluster.ErrQuorum
	// ErrUnknownMember: no member of the cluster has that id.
	ErrUnknownMember = cluster.ErrUnknownMember
	ErrTimeout       = cluster.ErrTimeout
	ErrClosed        = cluster.ErrClosed
	// ErrNotPending: an ack, nack or term of an offset that is not
	// currently delivered to the group (never delivered, already settled,
	// or its lease was given to another consumer after it expired).
	ErrNotPending = partition.ErrNotPending
	// ErrOffsetTruncated: the offset was deleted by retention.
	ErrOffsetTruncated = journal.ErrOffsetTruncated
	// ErrCorrupt: stored data failed its checksum; it is never returned.
	ErrCorrupt = journal.ErrCorrupt
	// ErrInvalidArgument: a bad argument that no other error describes.
	ErrInvalidArgument = cluster.ErrInvalidArgument
	// ErrUnavailable: a remote node cannot be reached.
	ErrUnavailable = transport.ErrUnavailable
)

// Header is one application header of a message.
type Header = journal.Header

// Message is a message to publish.
type Message struct {
	Key     []byte
	Headers []Header
	Payload []byte
	// ID, when set, makes the publish idempotent: a message with the same
	// ID published to the topic within its dedup window is not stored
	// again, and its ack carries the original's partition and offset.
	ID string
	// Timestamp overrides the broker's clock (zero: the broker stamps it).
	Timestamp time.Time
}

// PublishAck says where a published message is stored.
type PublishAck struct {
	Partition int
	Offset    uint64
	// Duplicate: the message repeated the ID of one already stored, and
	// this is the original's position; nothing new was stored.
	Duplicate bool
}

// TopicConfig configures a topic.
type TopicConfig struct {
	// Partitions (default 1) cannot change after creation.
	Partitions int
	// MaxAge: whole segments whose messages are all older are deleted
	// (0: keep).
	MaxAge time.Duration
	// MaxBytes per partition: the oldest whole segments are deleted to stay
	// under it (0: no limit).
	MaxBytes int64
	// DedupWindow: how long message IDs are remembered (default 2 minutes;
	// negative disables de-duplication).
	DedupWindow time.Duration
}

// DefaultDedupWindow is the dedup window of a topic that sets none.
const DefaultDedupWindow = 2 * time.Minute

func (c TopicConfig) internal() fsm.TopicConfig {
	out := fsm.TopicConfig{Partitions: c.Partitions, MaxAge: c.MaxAge, MaxBytes: c.MaxBytes, DedupWindow: c.DedupWindow}
	if out.Partitions == 0 {
		out.Partitions = 1
	}
	switch {
	case c.DedupWindow == 0:
		out.DedupWindow = DefaultDedupWindow
	case c.DedupWindow < 0:
		out.DedupWindow = 0
	}
	return out
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string
	Config     TopicConfig
	Groups     []string
	Partitions []PartitionInfo
}

// PartitionInfo describes one partition: its retained offsets are
// [FirstOffset, NextOffset).
type PartitionInfo struct {
	Partition   int
	FirstOffset uint64
	NextOffset  uint64
	Bytes       int64
	Segments    int
}

// StartAt says where a new group starts.
type StartAt int

// Where a new group starts.
const (
	StartEarliest StartAt = iota // the first retained message
	StartLatest                  // the next message published
)

// GroupConfig configures a consumer group.
type GroupConfig struct {
	StartAt StartAt
	// AckWait is how long a delivery may stay unsettled before it is
	// delivered again (default 30 s).
	AckWait time.Duration
	// MaxDeliver: a message delivered this many times without being
	// settled goes to the dead-letter topic (0: default 5; negative: no
	// limit).
	MaxDeliver int
	// DeadLetterTopic (default "<topic>.<group>.dlq", created when first
	// needed).
	DeadLetterTopic string
}

// Defaults of GroupConfig.
const (
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 5
)

func (c GroupConfig) internal() fsm.GroupConfig {
	out := fsm.GroupConfig{AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, DeadLetterTopic: c.DeadLetterTopic}
	if out.AckWait == 0 {
		out.AckWait = DefaultAckWait
	}
	switch {
	case c.MaxDeliver == 0:
		out.MaxDeliver = DefaultMaxDeliver
	case c.MaxDeliver < 0:
		out.MaxDeliver = 0
	}
	return out
}

// GroupInfo describes a group's progress.
type GroupInfo struct {
	Topic, Group string
	Config       GroupConfig
	Partitions   []GroupPartitionInfo
}

// GroupPartitionInfo is a group's progress on one partition.
type GroupPartitionInfo struct {
	Partition int
	AckFloor  uint64 // every offset below is settled
	EndOffset uint64 // the partition's next offset
	Lag       uint64 // unsettled messages: EndOffset - AckFloor - settled above the floor
	Pending   int    // messages delivered and not yet settled
}

// ResetTo is where ResetGroup moves a group: an offset (applied to every
// partition, clamped to what is retained) or, when Time is set, the first
// message stamped at or after it.
type ResetTo struct {
	Offset uint64
	Time   time.Time
}

// Ref names one delivered message of a group.
type Ref struct {
	Group     string
	Topic     string
	Partition int
	Offset    uint64
}

// Delivery is a message leased to a consumer.
type Delivery struct {
	Ref
	Key        []byte
	Headers    []Header
	Payload    []byte
	ID         string
	Timestamp  time.Time
	Deliveries uint32 // 1 on the first delivery
}

// Record is a stored message, as Read returns it.
type Record struct {
	Partition int
	Offset    uint64
	Key       []byte
	Headers   []Header
	Payload   []byte
	ID        string
	Timestamp time.Time
}

// ReadResult is what Read returns.
type ReadResult struct {
	// NodeID is the node that answered (the local one when embedded).
	NodeID string
	// FirstOffset and NextOffset: the partition's retained, committed
	// offsets on that node are [FirstOffset, NextOffset).
	FirstOffset, NextOffset uint64
	// Records, in offset order from the offset asked; empty when there was
	// nothing there within the wait.
	Records []Record
}

// PartitionForKey is the partition a key goes to among n: FNV-1a (32 bit)
// of the key, modulo n. It never changes, so a key's messages stay in
// order in one partition.
func PartitionForKey(key []byte, n int) int { return cluster.PartitionForKey(key, n) }
