package fsm

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

// DefaultMaxMessageBytes bounds one message (key, id, headers, payload).
const DefaultMaxMessageBytes = 1 << 20

// Options configure the state machine.
type Options struct {
	// Dir holds the topics: Dir/<topic>/<partition>/ is a journal.
	Dir string
	// Journal configures every partition journal. SegmentBytes must be the
	// same on every replica, so that retention deletes the same segments.
	Journal journal.Options
	// MaxMessageBytes bounds one message (default 1 MiB). It must be the
	// same on every replica: it decides which publishes are refused.
	MaxMessageBytes int
	// Logger (default none).
	Logger hclog.Logger
	// OnFatal is called once, from the apply goroutine, when applying a
	// committed entry fails on storage. The node must stop.
	OnFatal func(error)
	// WaitDurable, if set, is called before a batch is applied with its
	// last index and returns once the local raft log holds every entry up
	// to it on disk (a leader that writes its log in parallel with
	// replication). An error fails the state machine.
	WaitDurable func(index uint64) error
}

// FSM is walmq's raft.BatchingFSM: it applies committed commands to the
// topics, partitions and consumer groups.
//
// Apply and ApplyBatch run on raft's FSM goroutine; Snapshot too, never
// concurrently with them. FSMSnapshot.Persist runs concurrently with
// Apply. The read methods (Topic, Topics, Partition) may be called from
// any goroutine.
type FSM struct {
	opts Options
	log  hclog.Logger

	mu      sync.RWMutex // guards topics, members and every topic's metadata
	topics  map[string]*Topic
	members map[string]string // node id -> client address
	applied atomic.Uint64
	fatal   atomic.Pointer[error]
}

// Topic is the state of one topic.
type Topic struct {
	Name    string
	Config  TopicConfig
	Created uint64 // Raft index of the CreateTopic
	Groups  map[string]GroupConfig
	Parts   []*Part
	dedup   dedupTable
}

// Part is one partition of a topic with the offset its next message gets,
// as of the last applied entry. During a replay after a restart the
// journal may already hold more; next is what the Raft log says.
type Part struct {
	*partition.Partition
	next atomic.Uint64
}

// Next is the offset the partition's next message gets.
func (p *Part) Next() uint64 { return p.next.Load() }

// New returns an empty state machine over opts.Dir; LoadLocal or Restore
// fill it.
func New(opts Options) (*FSM, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: fsm needs a directory", ErrInvalidConfig)
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	// The journal takes the dead-letter headers on top of the limit.
	opts.Journal.MaxMessageBytes = max(opts.Journal.MaxMessageBytes, opts.MaxMessageBytes+dlqHeadroom)
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	if err := removeTrash(opts.Dir); err != nil {
		return nil, err
	}
	return &FSM{opts: opts, log: opts.Logger, topics: map[string]*Topic{}}, nil
}

func (f *FSM) applyMember(c *Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.members == nil {
		f.members = map[string]string{}
	}
	if c.ClientAddr == "" {
		delete(f.members, c.ID)
	} else {
		f.members[c.ID] = c.ClientAddr
	}
}

// ClientAddr is the client address node id announced, "" if none.
func (f *FSM) ClientAddr(id string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.members[id]
}

// AppliedIndex is the index of the last entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Err is the storage error that stopped the state machine, if any.
func (f *FSM) Err() error {
	if p := f.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Close closes every partition.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	for _, t := range f.topics {
		if cerr := t.close(); err == nil {
			err = cerr
		}
	}
	f.topics = map[string]*Topic{}
	return err
}

func (t *Topic) close() error {
	var err error
	for _, p := range t.Parts {
		if cerr := p.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// TopicNames lists the topics, sorted.
func (f *FSM) TopicNames() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.topics))
}

// TopicInfo is a copy of a topic's metadata.
type TopicInfo struct {
	Name       string
	Config     TopicConfig
	Groups     map[string]GroupConfig
	Partitions []PartitionInfo
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	First, Next uint64 // retained offsets are [First, Next)
	Bytes       int64
	Segments    int
}

// Topic returns a copy of a topic's metadata.
func (f *FSM) Topic(name string) (TopicInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.topics[name]
	if !ok {
		return TopicInfo{}, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	info := TopicInfo{Name: t.Name, Config: t.Config, Groups: make(map[string]GroupConfig, len(t.Groups))}
	for g, c := range t.Groups {
		info.Groups[g] = c
	}
	for _, p := range t.Parts {
		pi := PartitionInfo{First: p.Journal().FirstOffset(), Next: p.Next()}
		for _, s := range p.Journal().Segments() {
			pi.Bytes += s.Size
			pi.Segments++
		}
		info.Partitions = append(info.Partitions, pi)
	}
	return info, nil
}

// PartitionCount is the number of partitions of a topic.
func (f *FSM) PartitionCount(topic string) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.topics[topic]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
	}
	return len(t.Parts), nil
}

// Partition returns a partition of a topic for reads, leases and waits.
func (f *FSM) Partition(topic string, p int) (*partition.Partition, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, topic)
	}
	if p < 0 || p >= len(t.Parts) {
		return nil, fmt.Errorf("%w: partition %d of %q (it has %d)", ErrPartitionRange, p, topic, len(t.Parts))
	}
	return t.Parts[p].Partition, nil
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM. Each response is the command's
// result or its error.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if w := f.opts.WaitDurable; w != nil && len(logs) > 0 && f.Err() == nil {
		last := logs[len(logs)-1].Index
		if err := w(last); err != nil {
			f.fail(last, err)
		}
	}
	for i, l := range logs {
		if err := f.Err(); err != nil {
			out[i] = err
			continue
		}
		if l.Type == raft.LogCommand {
			out[i] = f.applyCommand(l.Index, l.Data)
		}
		f.applied.Store(l.Index)
	}
	return out
}

func (f *FSM) applyCommand(index uint64, data []byte) any {
	if len(data) > 0 && Op(data[0]) == OpPublish && f.skipReplayed(index, data[1:]) {
		return nil
	}
	cmd, err := Decode(data)
	if err != nil {
		return err
	}
	var res any
	switch c := cmd.(type) {
	case *Publish:
		res, err = f.applyPublish(index, c)
	case *Settle:
		res, err = f.applySettle(c)
	case *CreateTopic:
		err = f.applyCreateTopic(index, c)
	case *UpdateTopic:
		err = f.applyUpdateTopic(c)
	case *DeleteTopic:
		err = f.applyDeleteTopic(c)
	case *CreateGroup:
		err = f.applyCreateGroup(c)
	case *DeleteGroup:
		err = f.applyDeleteGroup(c)
	case *ResetGroup:
		err = f.applyResetGroup(c)
	case *Retention:
		res, err = f.applyRetention(c)
	case *DeadLetter:
		res, err = f.applyDeadLetter(index, c)
	case *Member:
		f.applyMember(c)
	}
	var se *storageError
	if errors.As(err, &se) {
		return f.fail(index, se.err)
	}
	if err != nil {
		return err
	}
	return res
}

// storageError marks an apply failure that is not a refusal of the
// command: the entry was valid and the disk failed.
type storageError struct{ err error }

func (e *storageError) Error() string { return e.err.Error() }

func storage(err error) error { return &storageError{err} }

// fail stops the state machine loudly: every later entry is refused and
// OnFatal tells the node to shut down.
func (f *FSM) fail(index uint64, err error) error {
	ferr := fmt.Errorf("%w: applying entry %d: %w", ErrFailed, index, err)
	if f.fatal.CompareAndSwap(nil, &ferr) {
		f.log.Error("state machine failed; the node must stop", "index", index, "error", err)
		if f.opts.OnFatal != nil {
			f.opts.OnFatal(ferr)
		}
	}
	return ferr
}

func (f *FSM) topicDir(name string) string { return filepath.Join(f.opts.Dir, name) }

func (f *FSM) partDir(topic string, p int) string {
	return filepath.Join(f.opts.Dir, topic, strconv.Itoa(p))
}

func validateTopicConfig(c TopicConfig) error {
	switch {
	case c.Partitions < 1 || c.Partitions > 1024:
		return fmt.Errorf("%w: partitions %d not in [1, 1024]", ErrInvalidConfig, c.Partitions)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: negative max age", ErrInvalidConfig)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: negative max bytes", ErrInvalidConfig)
	case c.DedupWindow < 0:
		return fmt.Errorf("%w: negative dedup window", ErrInvalidConfig)
	}
	return nil
}

func (f *FSM) applyCreateTopic(index uint64, c *CreateTopic) error {
	if !ValidName(c.Name) {
		return fmt.Errorf("%w: topic %q", ErrInvalidName, c.Name)
	}
	if err := validateTopicConfig(c.Config); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[c.Name]; ok {
		return fmt.Errorf("%w: %q", ErrTopicExists, c.Name)
	}
	t, err := f.openTopic(c.Name, c.Config, index)
	if err != nil {
		return storage(err)
	}
	f.topics[c.Name] = t
	return nil
}

// openTopic opens (creating if needed) the partitions of a topic. A
// directory left from a later incarnation of the same name is opened as
// it is: its batches carry higher Raft indexes, so replay skips them until
// the DeleteTopic that comes before that incarnation removes them.
func (f *FSM) openTopic(name string, cfg TopicConfig, created uint64) (*Topic, error) {
	t := &Topic{Name: name, Config: cfg, Created: created, Groups: map[string]GroupConfig{}}
	if err := writeIncarnation(f.topicDir(name), created); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Partitions; i++ {
		p, err := partition.Open(f.partDir(name, i), f.opts.Journal)
		if err != nil {
			t.close()
			return nil, err
		}
		t.Parts = append(t.Parts, &Part{Partition: p})
	}
	return t, nil
}

func (f *FSM) topicLocked(name string) (*Topic, error) {
	t, ok := f.topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	return t, nil
}

func (f *FSM) applyUpdateTopic(c *UpdateTopic) error {
	if err := validateTopicConfig(c.Config); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.topicLocked(c.Name)
	if err != nil {
		return err
	}
	if c.Config.Partitions != t.Config.Partitions {
		return fmt.Errorf("%w: the number of partitions of %q cannot change", ErrInvalidConfig, c.Name)
	}
	t.Config = c.Config
	return nil
}

func (f *FSM) applyDeleteTopic(c *DeleteTopic) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.topicLocked(c.Name)
	if err != nil {
		return err
	}
	delete(f.topics, c.Name)
	if err := t.close(); err != nil {
		return storage(err)
	}
	if err := f.trashTopicDir(c.Name); err != nil {
		return storage(err)
	}
	return nil
}

// PublishResult is the outcome of a publish: for every message its
// partition and offset, and whether it was a duplicate of a message
// already stored (its partition and offset are then the original's, and
// nothing was stored for it).
type PublishResult struct {
	Partitions []int
	Offsets    []uint64
	Duplicate  []bool
}

func (f *FSM) applyPublish(index uint64, c *Publish) (*PublishResult, error) {
	return f.publish(index, c, f.opts.MaxMessageBytes)
}

// publish applies a publish whose messages may take up to limit bytes.
func (f *FSM) publish(index uint64, c *Publish, limit int) (*PublishResult, error) {
	if len(c.Messages) == 0 {
		return nil, ErrEmptyPublish
	}
	f.mu.RLock()
	t, err := f.topicLocked(c.Topic)
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if c.Partition < 0 || c.Partition >= len(t.Parts) {
		return nil, fmt.Errorf("%w: partition %d of %q (it has %d)", ErrPartitionRange, c.Partition, c.Topic, len(t.Parts))
	}
	for i := range c.Messages {
		if n := journal.MessageSize(&c.Messages[i]); n > limit {
			return nil, fmt.Errorf("%w: message %d is %d bytes, the limit is %d", ErrMessageTooLarge, i, n, limit)
		}
	}
	p := t.Parts[c.Partition]
	res := &PublishResult{Partitions: make([]int, len(c.Messages)), Offsets: make([]uint64, len(c.Messages)), Duplicate: make([]bool, len(c.Messages))}
	for i := range res.Partitions {
		res.Partitions[i] = c.Partition
	}
	t.dedup.prune(c.Timestamp - int64(t.Config.DedupWindow))
	fresh := c.Messages
	next := p.Next()
	if t.Config.DedupWindow > 0 {
		// fresh is c.Messages until the first duplicate, a copy without
		// the duplicates after it.
		copied := false
		for i := range c.Messages {
			m := &c.Messages[i]
			if m.ID != "" {
				if e, ok := t.dedup.get(m.ID); ok {
					res.Partitions[i], res.Offsets[i], res.Duplicate[i] = e.Partition, e.Offset, true
					if !copied {
						fresh = append(make([]journal.Message, 0, len(c.Messages)-1), c.Messages[:i]...)
						copied = true
					}
					continue
				}
				t.dedup.add(dedupEntry{ID: m.ID, Partition: c.Partition, Offset: next, Timestamp: c.Timestamp})
			}
			res.Offsets[i] = next
			next++
			if copied {
				fresh = append(fresh, *m)
			}
		}
	} else {
		for i := range res.Offsets {
			res.Offsets[i] = next
			next++
		}
	}
	if plantedBug && index%17 == 0 && len(fresh) > 0 {
		return res, nil // acknowledged, not stored: see planted_bug.go
	}
	if len(fresh) > 0 && index > p.Journal().LastRaftIndex() {
		if got := p.Journal().NextOffset(); got != p.Next() {
			return nil, storage(fmt.Errorf("partition %s/%d: journal next offset %d, raft log says %d", c.Topic, c.Partition, got, p.Next()))
		}
		if _, err := p.Append(journal.Batch{RaftIndex: index, Timestamp: c.Timestamp, Messages: fresh}); err != nil {
			return nil, storage(err)
		}
	}
	p.next.Store(next)
	return res, nil
}

// skipReplayed handles, without decoding its messages, a publish the
// journal already holds (a replay after a restart) to a topic without a
// dedup window: only the partition's next offset moves. Anything else
// takes the full path.
func (f *FSM) skipReplayed(index uint64, data []byte) bool {
	h, ok := decodePublishHeader(data, f.opts.MaxMessageBytes)
	if !ok || h.Count == 0 {
		return false
	}
	f.mu.RLock()
	t, ok := f.topics[h.Topic]
	f.mu.RUnlock()
	if !ok || t.Config.DedupWindow > 0 || h.Partition >= len(t.Parts) {
		return false
	}
	p := t.Parts[h.Partition]
	if index > p.Journal().LastRaftIndex() {
		return false
	}
	p.next.Add(uint64(h.Count))
	return true
}

// SettleResult counts the offsets a Settle newly settled.
type SettleResult struct{ Settled int }

func (f *FSM) groupLocked(topic, group string) (*Topic, error) {
	t, err := f.topicLocked(topic)
	if err != nil {
		return nil, err
	}
	if _, ok := t.Groups[group]; !ok {
		return nil, fmt.Errorf("%w: %q on topic %q", ErrGroupNotFound, group, topic)
	}
	return t, nil
}

func (f *FSM) applySettle(c *Settle) (*SettleResult, error) {
	f.mu.RLock()
	t, err := f.groupLocked(c.Topic, c.Group)
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(c.Offsets)) {
		if p < 0 || p >= len(t.Parts) {
			return nil, fmt.Errorf("%w: partition %d of %q", ErrPartitionRange, p, c.Topic)
		}
	}
	res := &SettleResult{}
	for _, p := range slices.Sorted(maps.Keys(c.Offsets)) {
		// Offsets the log has not reached cannot have been delivered.
		// Filter them here, against the log's position, not in the
		// partition, whose watermark is ahead during a replay.
		part := t.Parts[p]
		offs := slices.DeleteFunc(slices.Clone(c.Offsets[p]), func(o uint64) bool { return o >= part.Next() })
		n, err := part.Settle(c.Group, offs)
		if err != nil {
			return nil, storage(err)
		}
		res.Settled += n
	}
	return res, nil
}

func validateGroupConfig(c GroupConfig) error {
	switch {
	case c.AckWait <= 0:
		return fmt.Errorf("%w: ack wait must be positive", ErrInvalidConfig)
	case c.MaxDeliver < 0:
		return fmt.Errorf("%w: negative max deliver", ErrInvalidConfig)
	case c.DeadLetterTopic != "" && !ValidName(c.DeadLetterTopic):
		return fmt.Errorf("%w: dead-letter topic %q", ErrInvalidName, c.DeadLetterTopic)
	}
	return nil
}

func (f *FSM) applyCreateGroup(c *CreateGroup) error {
	if !ValidName(c.Group) {
		return fmt.Errorf("%w: group %q", ErrInvalidName, c.Group)
	}
	if err := validateGroupConfig(c.Config); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.topicLocked(c.Topic)
	if err != nil {
		return err
	}
	if _, ok := t.Groups[c.Group]; ok {
		return fmt.Errorf("%w: %q on topic %q", ErrGroupExists, c.Group, c.Topic)
	}
	if len(c.Start) != len(t.Parts) {
		return fmt.Errorf("%w: %d start offsets for %d partitions", ErrBadCommand, len(c.Start), len(t.Parts))
	}
	t.Groups[c.Group] = c.Config
	for i, p := range t.Parts {
		if err := p.AddGroup(c.Group, min(c.Start[i], p.Next())); err != nil {
			return storage(err)
		}
	}
	return nil
}

func (f *FSM) applyDeleteGroup(c *DeleteGroup) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.groupLocked(c.Topic, c.Group)
	if err != nil {
		return err
	}
	delete(t.Groups, c.Group)
	for _, p := range t.Parts {
		if err := p.RemoveGroup(c.Group); err != nil {
			return storage(err)
		}
	}
	return nil
}

func (f *FSM) applyResetGroup(c *ResetGroup) error {
	f.mu.RLock()
	t, err := f.groupLocked(c.Topic, c.Group)
	f.mu.RUnlock()
	if err != nil {
		return err
	}
	if len(c.Offsets) != len(t.Parts) {
		return fmt.Errorf("%w: %d offsets for %d partitions", ErrBadCommand, len(c.Offsets), len(t.Parts))
	}
	for i, p := range t.Parts {
		if err := p.ResetGroup(c.Group, min(c.Offsets[i], p.Next())); err != nil {
			return storage(err)
		}
	}
	return nil
}

// RetentionResult counts the segments deleted.
type RetentionResult struct{ Segments int }

func (f *FSM) applyRetention(c *Retention) (*RetentionResult, error) {
	f.mu.RLock()
	t, err := f.topicLocked(c.Topic)
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if len(c.Before) != len(t.Parts) {
		return nil, fmt.Errorf("%w: %d offsets for %d partitions", ErrBadCommand, len(c.Before), len(t.Parts))
	}
	res := &RetentionResult{}
	for i, p := range t.Parts {
		n, err := p.DeleteBefore(min(c.Before[i], p.Next()))
		if err != nil {
			return nil, storage(err)
		}
		res.Segments += n
	}
	return res, nil
}

// Dead-letter headers added to a message moved to a dead-letter topic.
const (
	HeaderDLQReason     = "walmq-dlq-reason"
	HeaderDLQTopic      = "walmq-dlq-topic"
	HeaderDLQPartition  = "walmq-dlq-partition"
	HeaderDLQOffset     = "walmq-dlq-offset"
	HeaderDLQGroup      = "walmq-dlq-group"
	HeaderDLQDeliveries = "walmq-dlq-deliveries"
)

// DeadLetterTopic is the dead-letter topic of a group unless its config
// names one.
func DeadLetterTopic(topic, group string, cfg GroupConfig) string {
	if cfg.DeadLetterTopic != "" {
		return cfg.DeadLetterTopic
	}
	name := topic + "." + group + ".dlq"
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	return name
}

func (f *FSM) applyDeadLetter(index uint64, c *DeadLetter) (*PublishResult, error) {
	f.mu.Lock()
	t, err := f.groupLocked(c.Topic, c.Group)
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	if c.Partition < 0 || c.Partition >= len(t.Parts) {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: partition %d of %q", ErrPartitionRange, c.Partition, c.Topic)
	}
	if n := journal.MessageSize(&c.Message); n > f.opts.MaxMessageBytes {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: dead letter of %d bytes, the limit is %d", ErrMessageTooLarge, n, f.opts.MaxMessageBytes)
	}
	dlqName := DeadLetterTopic(c.Topic, c.Group, t.Groups[c.Group])
	if _, ok := f.topics[dlqName]; !ok {
		dlq, err := f.openTopic(dlqName, TopicConfig{Partitions: 1}, index)
		if err != nil {
			f.mu.Unlock()
			return nil, storage(err)
		}
		f.topics[dlqName] = dlq
	}
	f.mu.Unlock()
	m := c.Message
	m.Headers = append(slices.Clip(m.Headers),
		journal.Header{Key: HeaderDLQReason, Value: []byte(c.Reason)},
		journal.Header{Key: HeaderDLQTopic, Value: []byte(c.Topic)},
		journal.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(c.Partition))},
		journal.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatUint(c.Offset, 10))},
		journal.Header{Key: HeaderDLQGroup, Value: []byte(c.Group)},
		journal.Header{Key: HeaderDLQDeliveries, Value: []byte(strconv.FormatUint(uint64(c.Deliveries), 10))},
	)
	m.ID = "" // the copy is a new message; its id must not collide with the original's
	res, err := f.publish(index, &Publish{Topic: dlqName, Timestamp: c.Timestamp, Messages: []journal.Message{m}}, f.opts.MaxMessageBytes+dlqHeadroom)
	if err != nil {
		return nil, err
	}
	if p := t.Parts[c.Partition]; c.Offset < p.Next() {
		if _, err := p.Settle(c.Group, []uint64{c.Offset}); err != nil {
			return nil, storage(err)
		}
	}
	return res, nil
}

func sortedUnique(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
