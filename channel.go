package walmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"
)

// Channel errors, in the manner of Rust's std::sync::mpsc.
var (
	// ErrDisconnected: Recv found the channel empty with every Sender
	// closed, or Send found the Receiver closed.
	ErrDisconnected = errors.New("walmq: channel disconnected")
	// ErrFull: TrySend on a bounded channel at its bound.
	ErrFull = errors.New("walmq: channel full")
	// ErrEmpty: TryRecv found nothing to receive.
	ErrEmpty = errors.New("walmq: channel empty")
	// ErrSendTimeout and ErrRecvTimeout: the timeout or deadline passed.
	ErrSendTimeout = errors.New("walmq: send timed out")
	ErrRecvTimeout = errors.New("walmq: receive timed out")
	// ErrDecode wraps a message the codec could not decode. It is reported
	// on that delivery only; the receiver goes on.
	ErrDecode = errors.New("walmq: cannot decode message")
)

// Codec turns values of T into message payloads and back.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// JSONCodec encodes values as JSON. It is the default codec.
type JSONCodec[T any] struct{}

// Encode implements Codec.
func (JSONCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// BytesCodec passes []byte payloads through unchanged.
type BytesCodec struct{}

// Encode implements Codec.
func (BytesCodec) Encode(v []byte) ([]byte, error) { return v, nil }

// Decode implements Codec.
func (BytesCodec) Decode(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }

// Durability says when Send returns.
type Durability struct {
	mode     durabilityMode
	maxOps   int
	maxDelay time.Duration
}

type durabilityMode int

const (
	syncPerSend durabilityMode = iota
	flushOnly
	syncEvery
)

// The durability modes.
var (
	// SyncPerSend (the default): Send returns once the message is
	// committed, fsynced in the Raft log. Nothing a Send returned for is
	// ever lost.
	SyncPerSend = Durability{mode: syncPerSend}
	// FlushOnly: Send returns once the message is queued for the broker;
	// it is committed moments later in a batch. WEAKER: a crash of the
	// process loses the sends of the last moments, and a failed commit is
	// reported by a later Send, Sync or Close, not by the Send itself.
	FlushOnly = Durability{mode: flushOnly}
)

// SyncEvery is FlushOnly with a bound on what a crash may lose: after
// maxOps sends, or when the oldest uncommitted send is maxDelay old, the
// next Send waits until every earlier one is committed. WEAKER than
// SyncPerSend: up to maxOps sends (or maxDelay of them) may be lost.
func SyncEvery(maxOps int, maxDelay time.Duration) Durability {
	return Durability{mode: syncEvery, maxOps: max(maxOps, 1), maxDelay: maxDelay}
}

// ChannelOptions configure a channel.
type ChannelOptions[T any] struct {
	// Codec (default JSONCodec).
	Codec Codec[T]
	// Durability of sends (default SyncPerSend).
	Durability Durability
	// Group is the consumer group the receiver uses (default "walchan").
	Group string
	// AckWait before an unacknowledged delivery is received again
	// (default 30 s).
	AckWait time.Duration
	// Prefetch is how many messages the receiver fetches at once
	// (default 256).
	Prefetch int
	// MaxUnsynced caps the sends of a FlushOnly or SyncEvery channel that
	// are queued and not yet committed (default DefaultMaxUnsynced): Send
	// blocks at the cap (TrySend fails with ErrFull), so a fast sender
	// cannot outrun the disk without bound.
	MaxUnsynced int
}

// chanState is what the senders and the receiver of one channel share.
type chanState[T any] struct {
	b     Broker
	topic string
	opts  ChannelOptions[T]
	bound int // 0: unbounded

	qMu      sync.Mutex // guards queue and flushing
	queue    []Message  // sends not yet handed to the broker
	flushing bool       // a flusher is running
	flushWG  sync.WaitGroup

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change below
	senders   int
	rxClosed  bool
	inFlight  int    // sends not yet acknowledged by the receiver (bounded only)
	unsynced  int    // async sends not yet committed
	issued    uint64 // async sends queued so far
	completed uint64 // async sends whose commit succeeded or failed
	oldest    time.Time
	asyncErr  error
}

func (s *chanState[T]) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// DefaultMaxUnsynced is the default of ChannelOptions.MaxUnsynced.
const DefaultMaxUnsynced = 1 << 18

// Unbounded opens the channel name on b (a topic of one partition, created
// if needed) and returns its first Sender and its Receiver.
func Unbounded[T any](b Broker, name string, opts ChannelOptions[T]) (*Sender[T], *Receiver[T], error) {
	return openChannel(b, name, 0, opts)
}

// Bounded is Unbounded with a bound: Send blocks while bound messages are
// sent and not yet acknowledged by the receiver.
func Bounded[T any](b Broker, name string, bound int, opts ChannelOptions[T]) (*Sender[T], *Receiver[T], error) {
	if bound <= 0 {
		return nil, nil, fmt.Errorf("%w: bound %d must be positive", ErrInvalidArgument, bound)
	}
	return openChannel(b, name, bound, opts)
}

func openChannel[T any](b Broker, name string, bound int, opts ChannelOptions[T]) (*Sender[T], *Receiver[T], error) {
	if opts.Codec == nil {
		opts.Codec = JSONCodec[T]{}
	}
	if opts.Group == "" {
		opts.Group = "walchan"
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 256
	}
	if opts.MaxUnsynced <= 0 {
		opts.MaxUnsynced = DefaultMaxUnsynced
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.CreateTopic(ctx, name, TopicConfig{Partitions: 1}); err != nil && !errors.Is(err, ErrTopicExists) {
		return nil, nil, err
	}
	err := b.CreateGroup(ctx, name, opts.Group, GroupConfig{AckWait: opts.AckWait, MaxDeliver: -1})
	if err != nil && !errors.Is(err, ErrGroupExists) {
		return nil, nil, err
	}
	s := &chanState[T]{b: b, topic: name, opts: opts, bound: bound, changed: make(chan struct{}), senders: 1}
	if bound > 0 {
		// Messages left unacknowledged by an earlier run count too.
		gi, err := b.DescribeGroup(ctx, name, opts.Group)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range gi.Partitions {
			s.inFlight += int(p.Lag)
		}
	}
	return &Sender[T]{s: s}, &Receiver[T]{s: s}, nil
}

// Sender sends values of T. Clone it for more senders; Close each.
type Sender[T any] struct {
	s      *chanState[T]
	closed bool
	mu     sync.Mutex
}

// Clone returns another Sender of the same channel.
func (tx *Sender[T]) Clone() *Sender[T] {
	tx.s.mu.Lock()
	tx.s.senders++
	tx.s.mu.Unlock()
	return &Sender[T]{s: tx.s}
}

// Send sends v, blocking while a bounded channel is full.
func (tx *Sender[T]) Send(v T) error { return tx.send(context.Background(), v, true) }

// TrySend sends v if that does not block on the bound: ErrFull if it would.
func (tx *Sender[T]) TrySend(v T) error { return tx.send(context.Background(), v, false) }

// SendTimeout sends v, waiting at most d for room: ErrSendTimeout after.
func (tx *Sender[T]) SendTimeout(v T, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := tx.send(ctx, v, true)
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrSendTimeout
	}
	return err
}

// SendContext sends v, blocking until ctx is done.
func (tx *Sender[T]) SendContext(ctx context.Context, v T) error { return tx.send(ctx, v, true) }

func (tx *Sender[T]) send(ctx context.Context, v T, block bool) error {
	s := tx.s
	tx.mu.Lock()
	closed := tx.closed
	tx.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: sender closed", ErrClosed)
	}
	payload, err := s.opts.Codec.Encode(v)
	if err != nil {
		return fmt.Errorf("walmq: encode: %w", err)
	}
	// Wait for room, then take it.
	s.mu.Lock()
	for {
		if s.rxClosed {
			s.mu.Unlock()
			return ErrDisconnected
		}
		if s.asyncErr != nil {
			err := s.asyncErr
			s.asyncErr = nil
			s.mu.Unlock()
			return fmt.Errorf("walmq: an earlier send failed: %w", err)
		}
		// Room under the bound, and under the cap on sends queued but not
		// yet committed (the weaker modes' back-pressure).
		if (s.bound == 0 || s.inFlight < s.bound) && s.unsynced < s.opts.MaxUnsynced {
			break
		}
		if !block {
			s.mu.Unlock()
			return ErrFull
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.inFlight++
	mustSync := false
	if s.opts.Durability.mode == syncEvery {
		if s.unsynced == 0 {
			s.oldest = time.Now()
		}
		mustSync = s.unsynced+1 >= s.opts.Durability.maxOps ||
			(s.opts.Durability.maxDelay > 0 && time.Since(s.oldest) >= s.opts.Durability.maxDelay)
	}
	s.mu.Unlock()

	msg := Message{Payload: payload}
	if s.opts.Durability.mode == syncPerSend {
		_, err := s.b.PublishTo(ctx, s.topic, 0, msg)
		if err != nil {
			s.release(1)
		}
		return err
	}
	// Queue it. One flusher at a time hands the queue to the broker in
	// order, so sends are stored in the order they were made, many per
	// publish.
	s.mu.Lock()
	s.unsynced++
	s.issued++
	s.mu.Unlock()
	s.qMu.Lock()
	s.queue = append(s.queue, msg)
	start := !s.flushing
	s.flushing = true
	s.qMu.Unlock()
	if start {
		s.flushWG.Add(1)
		go s.flush()
	}
	if mustSync {
		return tx.Sync()
	}
	return nil
}

// flush hands queued sends to the broker until the queue is empty.
func (s *chanState[T]) flush() {
	defer s.flushWG.Done()
	for {
		s.qMu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.flushing = false
			s.qMu.Unlock()
			return
		}
		s.qMu.Unlock()
		n := len(batch)
		err := s.b.PublishAsync(context.Background(), s.topic, 0, batch, func(_ []PublishAck, err error) {
			s.asyncDone(err, n)
		})
		if err != nil {
			s.asyncDone(err, n)
		}
	}
}

// asyncDone records the outcome of n queued sends; a failure is kept for
// the next Send, Sync or Close to report.
func (s *chanState[T]) asyncDone(err error, n int) {
	s.mu.Lock()
	s.unsynced -= n
	s.completed += uint64(n)
	if err != nil && s.asyncErr == nil {
		s.asyncErr = err
	}
	s.notifyLocked()
	s.mu.Unlock()
	if err != nil {
		s.release(n)
	}
}

// Sync waits until every send of this channel made before it is
// committed (sends made meanwhile, by other clones too, do not hold it
// up) and reports the first failure since the last Sync.
func (tx *Sender[T]) Sync() error {
	s := tx.s
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.issued
	for s.completed < target {
		ch := s.changed
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	err := s.asyncErr
	s.asyncErr = nil
	return err
}

// release gives back room taken by n sends.
func (s *chanState[T]) release(n int) {
	if s.bound == 0 {
		return
	}
	s.mu.Lock()
	s.inFlight = max(0, s.inFlight-n)
	s.notifyLocked()
	s.mu.Unlock()
}

// Close waits for this sender's uncommitted sends and disconnects it.
// When every Sender is closed, the Receiver gets ErrDisconnected once the
// channel is empty.
func (tx *Sender[T]) Close() error {
	tx.mu.Lock()
	if tx.closed {
		tx.mu.Unlock()
		return nil
	}
	tx.closed = true
	tx.mu.Unlock()
	err := tx.Sync()
	s := tx.s
	s.mu.Lock()
	s.senders--
	last := s.senders == 0
	s.notifyLocked()
	s.mu.Unlock()
	if last {
		s.flushWG.Wait() // no sender is left to start another flusher
	}
	return err
}

// ChanDelivery is one received value, to acknowledge with Ack (or give
// back with Nack). A value that could not be decoded has Err set (wrapping
// ErrDecode) and the zero Value.
type ChanDelivery[T any] struct {
	Value T
	Err   error
	Delivery
	s *chanState[T]
}

// Ack acknowledges the delivery: it is not received again once the ack is
// committed (acks are committed in batches).
func (d ChanDelivery[T]) Ack() error {
	if err := d.s.b.Ack(context.Background(), d.Ref); err != nil {
		return err
	}
	d.s.release(1)
	return nil
}

// Nack gives the delivery back, to be received again after delay.
func (d ChanDelivery[T]) Nack(delay time.Duration) error {
	return d.s.b.Nack(context.Background(), delay, d.Ref)
}

// Receiver receives values of T in the order they were sent; a delivery
// not acknowledged within AckWait, or after a crash, is received again.
type Receiver[T any] struct {
	s      *chanState[T]
	mu     sync.Mutex
	buf    []Delivery
	closed bool
}

// Recv waits for a value; ErrDisconnected once the channel is empty and
// every Sender closed.
func (rx *Receiver[T]) Recv() (ChanDelivery[T], error) { return rx.recv(context.Background(), true) }

// TryRecv returns a value if one is there now: ErrEmpty if none, or
// ErrDisconnected.
func (rx *Receiver[T]) TryRecv() (ChanDelivery[T], error) {
	return rx.recv(context.Background(), false)
}

// RecvTimeout waits at most d for a value: ErrRecvTimeout after.
func (rx *Receiver[T]) RecvTimeout(d time.Duration) (ChanDelivery[T], error) {
	return rx.RecvDeadline(time.Now().Add(d))
}

// RecvDeadline waits until t for a value: ErrRecvTimeout after.
func (rx *Receiver[T]) RecvDeadline(t time.Time) (ChanDelivery[T], error) {
	ctx, cancel := context.WithDeadline(context.Background(), t)
	defer cancel()
	d, err := rx.recv(ctx, true)
	if errors.Is(err, context.DeadlineExceeded) {
		return d, ErrRecvTimeout
	}
	return d, err
}

// RecvContext waits for a value until ctx is done.
func (rx *Receiver[T]) RecvContext(ctx context.Context) (ChanDelivery[T], error) {
	return rx.recv(ctx, true)
}

// TryIter yields the values there now, without waiting.
func (rx *Receiver[T]) TryIter() iter.Seq[ChanDelivery[T]] {
	return func(yield func(ChanDelivery[T]) bool) {
		for {
			d, err := rx.TryRecv()
			if err != nil || !yield(d) {
				return
			}
		}
	}
}

// All yields every value as it arrives until the channel is disconnected
// (the sequence then ends) or an error occurs (yielded, then it ends).
func (rx *Receiver[T]) All() iter.Seq2[ChanDelivery[T], error] {
	return func(yield func(ChanDelivery[T], error) bool) {
		for {
			d, err := rx.Recv()
			if errors.Is(err, ErrDisconnected) {
				return
			}
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// Close disconnects the receiver: later sends get ErrDisconnected.
// Unacknowledged deliveries will be received again by a later receiver.
func (rx *Receiver[T]) Close() error {
	rx.mu.Lock()
	rx.closed = true
	rx.buf = nil
	rx.mu.Unlock()
	s := rx.s
	s.mu.Lock()
	s.rxClosed = true
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// recvPoll is how often a waiting Recv rechecks whether the senders are
// gone.
const recvPoll = 100 * time.Millisecond

func (rx *Receiver[T]) recv(ctx context.Context, block bool) (ChanDelivery[T], error) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if rx.closed {
		return ChanDelivery[T]{}, fmt.Errorf("%w: receiver closed", ErrClosed)
	}
	s := rx.s
	for len(rx.buf) == 0 {
		s.mu.Lock()
		gone := s.senders == 0
		changed := s.changed
		s.mu.Unlock()
		wait := time.Duration(0)
		if block && !gone {
			wait = recvPoll
			if dl, ok := ctx.Deadline(); ok {
				wait = min(wait, time.Until(dl))
			}
		}
		ds, err := s.b.Fetch(ctx, s.opts.Group, s.topic, s.opts.Prefetch, max(wait, 0))
		if err != nil {
			return ChanDelivery[T]{}, err
		}
		rx.buf = ds
		if len(ds) > 0 {
			break
		}
		switch {
		case gone:
			// Every sender had closed before this fetch found nothing.
			return ChanDelivery[T]{}, ErrDisconnected
		case !block:
			return ChanDelivery[T]{}, ErrEmpty
		}
		select {
		case <-ctx.Done():
			return ChanDelivery[T]{}, ctx.Err()
		case <-changed:
		default:
		}
	}
	d := rx.buf[0]
	rx.buf = rx.buf[1:]
	out := ChanDelivery[T]{Delivery: d, s: s}
	v, err := s.opts.Codec.Decode(d.Payload)
	if err != nil {
		out.Err = fmt.Errorf("%w at offset %d: %w", ErrDecode, d.Offset, err)
	} else {
		out.Value = v
	}
	return out, nil
}
