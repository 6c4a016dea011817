package fsm

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/walmq/walmq/journal"
)

// Op is the first byte of every command: what the rest encodes.
type Op uint8

// The commands. Publish and Settle are on the hot path and have a compact
// binary encoding; the others are JSON after the op byte.
const (
	OpCreateTopic Op = 1 + iota
	OpUpdateTopic
	OpDeleteTopic
	OpPublish
	OpSettle
	OpCreateGroup
	OpDeleteGroup
	OpResetGroup
	OpRetention
	OpDeadLetter
	OpMember
)

// TopicConfig configures a topic.
type TopicConfig struct {
	Partitions  int           `json:"partitions"`
	MaxAge      time.Duration `json:"max_age,omitempty"`   // 0: keep forever
	MaxBytes    int64         `json:"max_bytes,omitempty"` // per partition; 0: no limit
	DedupWindow time.Duration `json:"dedup_window,omitempty"`
}

// GroupConfig configures a consumer group of a topic.
type GroupConfig struct {
	AckWait         time.Duration `json:"ack_wait"`
	MaxDeliver      int           `json:"max_deliver"`       // deliveries before dead-lettering; 0: no limit
	DeadLetterTopic string        `json:"dead_letter_topic"` // where messages past MaxDeliver go
}

// CreateTopic creates a topic and its partitions.
type CreateTopic struct {
	Name   string      `json:"name"`
	Config TopicConfig `json:"config"`
}

// UpdateTopic changes a topic's retention and dedup window. The number of
// partitions cannot change.
type UpdateTopic struct {
	Name   string      `json:"name"`
	Config TopicConfig `json:"config"`
}

// DeleteTopic deletes a topic, its partitions and its groups.
type DeleteTopic struct {
	Name string `json:"name"`
}

// Publish appends messages to one partition. Timestamp is the leader's
// clock when the batch was formed; messages without a timestamp get it.
type Publish struct {
	Topic     string
	Partition int
	Timestamp int64
	Messages  []journal.Message
}

// Settle records acks and terms of a group: offsets per partition.
type Settle struct {
	Topic   string
	Group   string
	Offsets map[int][]uint64
}

// CreateGroup creates a consumer group with a start offset per partition,
// resolved by the leader from "earliest" or "latest".
type CreateGroup struct {
	Topic  string      `json:"topic"`
	Group  string      `json:"group"`
	Config GroupConfig `json:"config"`
	Start  []uint64    `json:"start"`
}

// DeleteGroup deletes a consumer group.
type DeleteGroup struct {
	Topic string `json:"topic"`
	Group string `json:"group"`
}

// ResetGroup moves a group's ack floor of each partition to an offset
// (resolved by the leader from an offset or a time) and forgets what was
// settled above it.
type ResetGroup struct {
	Topic   string   `json:"topic"`
	Group   string   `json:"group"`
	Offsets []uint64 `json:"offsets"`
}

// Retention deletes, in each partition, the whole sealed segments below
// the offset the leader chose from the topic's retention limits.
type Retention struct {
	Topic  string   `json:"topic"`
	Before []uint64 `json:"before"`
}

// DeadLetter moves a message that reached a group's MaxDeliver to the
// group's dead-letter topic and settles it. The leader puts the message in
// the command so that applying it never depends on the journal's contents.
type DeadLetter struct {
	Topic      string          `json:"topic"`
	Group      string          `json:"group"`
	Partition  int             `json:"partition"`
	Offset     uint64          `json:"offset"`
	Deliveries uint32          `json:"deliveries"`
	Reason     string          `json:"reason"`
	Timestamp  int64           `json:"timestamp"`
	Message    journal.Message `json:"message"`
}

// Member records a node's client (gRPC) address, so that every node
// knows where to forward writes to the leader. An empty address forgets
// the node.
type Member struct {
	ID         string `json:"id"`
	ClientAddr string `json:"client_addr"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

// ValidName reports whether s may name a topic or a group: 1 to 200
// characters of letters, digits, '.', '_' and '-', not starting with a
// punctuation character.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Encode returns the command's bytes for a Raft log entry.
func Encode(cmd any) ([]byte, error) {
	switch c := cmd.(type) {
	case *Publish:
		return encodePublish(c), nil
	case *Settle:
		return encodeSettle(c), nil
	}
	var op Op
	switch cmd.(type) {
	case *CreateTopic:
		op = OpCreateTopic
	case *UpdateTopic:
		op = OpUpdateTopic
	case *DeleteTopic:
		op = OpDeleteTopic
	case *CreateGroup:
		op = OpCreateGroup
	case *DeleteGroup:
		op = OpDeleteGroup
	case *ResetGroup:
		op = OpResetGroup
	case *Retention:
		op = OpRetention
	case *DeadLetter:
		op = OpDeadLetter
	case *Member:
		op = OpMember
	default:
		return nil, fmt.Errorf("%w: unknown command type %T", ErrBadCommand, cmd)
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(op)}, b...), nil
}

// Decode parses a command encoded by Encode.
func Decode(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCommand)
	}
	var cmd any
	switch Op(b[0]) {
	case OpPublish:
		return decodePublish(b[1:])
	case OpSettle:
		return decodeSettle(b[1:])
	case OpCreateTopic:
		cmd = &CreateTopic{}
	case OpUpdateTopic:
		cmd = &UpdateTopic{}
	case OpDeleteTopic:
		cmd = &DeleteTopic{}
	case OpCreateGroup:
		cmd = &CreateGroup{}
	case OpDeleteGroup:
		cmd = &DeleteGroup{}
	case OpResetGroup:
		cmd = &ResetGroup{}
	case OpRetention:
		cmd = &Retention{}
	case OpDeadLetter:
		cmd = &DeadLetter{}
	case OpMember:
		cmd = &Member{}
	default:
		return nil, fmt.Errorf("%w: unknown op %d", ErrBadCommand, b[0])
	}
	if err := json.Unmarshal(b[1:], cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return cmd, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendKeyIDHeaders appends a message's key, id and headers (their
// count, then key and value each): the part of a message that the publish
// command and the partition digest (checksum.go) encode alike.
func appendKeyIDHeaders(b []byte, m *journal.Message) []byte {
	b = appendBytes(b, m.Key)
	b = appendString(b, m.ID)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendString(b, h.Key)
		b = appendBytes(b, h.Value)
	}
	return b
}

// encodePublish: op, topic, partition, timestamp, count, then per message
// key, id, headers (count, then key and value each), timestamp, payload.
func encodePublish(c *Publish) []byte {
	return EncodePublishParts(c.Topic, c.Partition, c.Timestamp, [][]journal.Message{c.Messages})
}

// EncodePublishParts encodes the Publish command whose messages are those
// of parts, in order, without gathering them into one slice first.
func EncodePublishParts(topic string, partition int, timestamp int64, parts [][]journal.Message) []byte {
	n, count := 32+len(topic), 0
	for _, msgs := range parts {
		count += len(msgs)
		for i := range msgs {
			m := &msgs[i]
			n += 24 + len(m.Key) + len(m.ID) + len(m.Payload)
			for _, h := range m.Headers {
				n += 8 + len(h.Key) + len(h.Value)
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, byte(OpPublish))
	b = appendString(b, topic)
	b = binary.AppendUvarint(b, uint64(partition))
	b = binary.AppendVarint(b, timestamp)
	b = binary.AppendUvarint(b, uint64(count))
	for _, msgs := range parts {
		for i := range msgs {
			m := &msgs[i]
			b = appendKeyIDHeaders(b, m)
			b = binary.AppendVarint(b, m.Timestamp)
			b = appendBytes(b, m.Payload)
		}
	}
	return b
}

// reader decodes the binary commands; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: bad varint", ErrBadCommand)
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: bad varint", ErrBadCommand)
		return 0
	}
	r.b = r.b[k:]
	return v
}

// count reads a length that must not exceed what is left, given that each
// element takes at least min bytes.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = fmt.Errorf("%w: count %d exceeds the data", ErrBadCommand, n)
		return 0
	}
	return int(n)
}

func (r *reader) bytes() []byte {
	n := r.count(1)
	if r.err != nil || n == 0 {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(r.b))
	}
	return r.err
}

// publishHeader is the part of a Publish before its messages.
type publishHeader struct {
	Topic     string
	Partition int
	Timestamp int64
	Count     int
}

// decodePublishHeader decodes a Publish command's header (data without
// the op byte) and checks its messages' framing and sizes without copying
// them, so a replayed entry can be skipped cheaply. maxMsg is the largest
// message size allowed; a larger one is reported by ok false.
func decodePublishHeader(b []byte, maxMsg int) (h publishHeader, ok bool) {
	r := &reader{b: b}
	h.Topic = r.string()
	h.Partition = int(min(r.uvarint(), 1<<21))
	h.Timestamp = r.varint()
	h.Count = r.count(5)
	for i := 0; i < h.Count && r.err == nil; i++ {
		size := len(r.bytes()) + len(r.bytes())
		for nh := r.count(2); nh > 0 && r.err == nil; nh-- {
			size += len(r.bytes()) + len(r.bytes())
		}
		r.varint()
		size += len(r.bytes())
		if size > maxMsg {
			return h, false
		}
	}
	return h, r.done() == nil
}

func decodePublish(b []byte) (*Publish, error) {
	r := &reader{b: b}
	c := &Publish{Topic: r.string()}
	p := r.uvarint()
	if p > 1<<20 {
		return nil, fmt.Errorf("%w: partition %d", ErrBadCommand, p)
	}
	c.Partition = int(p)
	c.Timestamp = r.varint()
	n := r.count(5) // each message takes at least five bytes
	if r.err == nil {
		c.Messages = make([]journal.Message, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		m := &c.Messages[i]
		m.Key = r.bytes()
		m.ID = r.string()
		if nh := r.count(2); nh > 0 {
			m.Headers = make([]journal.Header, nh)
			for j := range m.Headers {
				m.Headers[j] = journal.Header{Key: r.string(), Value: r.bytes()}
			}
		}
		m.Timestamp = r.varint()
		m.Payload = r.bytes()
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return c, nil
}

// encodeSettle: op, topic, group, partition count, then per partition in
// ascending order: partition, count, offsets as deltas from the previous.
func encodeSettle(c *Settle) []byte {
	parts := slices.Sorted(maps.Keys(c.Offsets))
	b := make([]byte, 0, 16+len(c.Topic)+len(c.Group)+4*len(parts))
	b = append(b, byte(OpSettle))
	b = appendString(b, c.Topic)
	b = appendString(b, c.Group)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		offs := sortedUnique(c.Offsets[p])
		b = binary.AppendUvarint(b, uint64(p))
		b = binary.AppendUvarint(b, uint64(len(offs)))
		var prev uint64
		for _, o := range offs {
			b = binary.AppendUvarint(b, o-prev)
			prev = o
		}
	}
	return b
}

func decodeSettle(b []byte) (*Settle, error) {
	r := &reader{b: b}
	c := &Settle{Topic: r.string(), Group: r.string(), Offsets: map[int][]uint64{}}
	np := r.count(2)
	for i := 0; i < np && r.err == nil; i++ {
		p := r.uvarint()
		if p > 1<<20 {
			return nil, fmt.Errorf("%w: partition %d", ErrBadCommand, p)
		}
		n := r.count(1)
		offs := make([]uint64, 0, n)
		var prev uint64
		for j := 0; j < n && r.err == nil; j++ {
			prev += r.uvarint()
			offs = append(offs, prev)
		}
		c.Offsets[int(p)] = offs
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return c, nil
}
