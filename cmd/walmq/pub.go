package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/walmq/walmq"
)

// Limits of pub reading standard input.
const (
	// maxLine is the longest line: a message's limit (1 MiB), and a
	// little for the line end.
	maxLine = 1<<20 + 2
	// inflightMsgs and inflightBytes bound the publishes sent and not yet
	// acknowledged. The byte bound also keeps each request the client
	// batches under its 64 MiB limit (the client bounds a batch only by its
	// count of messages).
	inflightMsgs  = 10000
	inflightBytes = 32 << 20
	// chunk lines go to one partition before the next takes over.
	chunk = 1000
)

const pubHelp = `With MESSAGE arguments, publishes them in one request, in order; keyless
messages go together to one partition (the node picks the next in turn).

Without them, publishes each line of standard input as one message (up to
1 MiB; the line end is not part of it). Lines are sent in batches with up
to 10,000 messages (and 32 MiB) in flight. With --key every line carries
the key and goes to the key's partition. Without --key, lines are spread
over the topic's partitions round robin in chunks of 1,000 consecutive
lines, from a partition picked at random (so that many short runs of pub
spread too): the lines of a chunk are stored in input order, in one
partition.
pub stops reading at the first failed publish, waits for those in flight
and exits with status 1, saying how many failed and the first error.

--id makes publishes idempotent within the topic's dedup window: the
first message gets ID, the next ID-1, then ID-2, and so on (by argument, or
by line of input), so that publishing the same input again with the same
ID stores nothing new.

--acks prints each acknowledged message on standard output as soon as it
is acknowledged, as PARTITION<TAB>OFFSET<TAB>PAYLOAD, in input order
within each partition (an ack that overtakes an earlier line of its
partition waits for that line's). An acknowledged message is durable.
`

type pubOptions struct {
	key, id  string
	keySet   bool
	showAcks bool
}

func (o pubOptions) message(i int, payload []byte) walmq.Message {
	m := walmq.Message{Payload: payload}
	if o.keySet {
		m.Key = []byte(o.key)
	}
	switch {
	case o.id == "":
	case i == 0:
		m.ID = o.id
	default:
		m.ID = o.id + "-" + strconv.Itoa(i)
	}
	return m
}

func pub(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	var o pubOptions
	fs.StringVar(&o.key, "key", "", "key of every message (all go to the key's partition)")
	fs.StringVar(&o.id, "id", "", "message id: ID for the first message, ID-1, ID-2... for the next")
	fs.BoolVar(&o.showAcks, "acks", false, "print PARTITION<TAB>OFFSET<TAB>PAYLOAD for each acknowledged message")
	return func(ctx context.Context, a *app, args []string) error {
		o.keySet = flagSet(fs, "key")
		topic := args[0]
		return a.withClient(ctx, func(c *walmq.Client) error {
			if len(args) > 1 {
				return pubArgs(ctx, a, c, topic, args[1:], o)
			}
			return pubLines(ctx, a, c, topic, o)
		})
	}
}

// pubArgs publishes the messages given as arguments in one request.
func pubArgs(ctx context.Context, a *app, c *walmq.Client, topic string, payloads []string, o pubOptions) error {
	msgs := make([]walmq.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = o.message(i, []byte(p))
	}
	var acks []walmq.PublishAck
	err := a.call(ctx, func(ctx context.Context) (err error) {
		acks, err = c.Publish(ctx, topic, msgs...)
		return err
	})
	if err != nil {
		return err
	}
	if o.showAcks {
		w := bufio.NewWriter(a.stdout)
		for i, ack := range acks {
			writeAck(w, ack, msgs[i].Payload)
		}
		return w.Flush()
	}
	return nil
}

func writeAck(w *bufio.Writer, ack walmq.PublishAck, payload []byte) {
	w.WriteString(strconv.Itoa(ack.Partition))
	w.WriteByte('\t')
	w.WriteString(strconv.FormatUint(ack.Offset, 10))
	w.WriteByte('\t')
	w.Write(payload)
	w.WriteByte('\n')
}

// pubResult is the outcome of one line's publish: the seq-th line sent
// to partition part.
type pubResult struct {
	part    int
	seq     uint64
	payload []byte
	ack     walmq.PublishAck
	err     error
}

// pubLines publishes each line of standard input, pipelined.
func pubLines(ctx context.Context, a *app, c *walmq.Client, topic string, o pubOptions) error {
	var ti walmq.TopicInfo
	err := a.call(ctx, func(ctx context.Context) (err error) {
		ti, err = c.DescribeTopic(ctx, topic)
		return err
	})
	if err != nil {
		return err
	}
	parts := len(ti.Partitions)
	if parts == 0 {
		return fmt.Errorf("topic %s has no partitions", topic)
	}
	keyPart := -1
	firstPart := rand.IntN(parts) // where the keyless chunks start
	if o.keySet {
		keyPart = walmq.PartitionForKey([]byte(o.key), parts)
	}

	win := newWindow(inflightMsgs, inflightBytes)
	// Every result holds its place in the window until it is printed, so
	// at most inflightMsgs are outstanding and sending one never blocks
	// (done callbacks must not).
	results := make(chan pubResult, inflightMsgs)
	out := &ackPrinter{w: bufio.NewWriterSize(a.stdout, 64<<10), show: o.showAcks, win: win,
		next: make([]uint64, parts), held: make([]map[uint64]pubResult, parts)}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for r := range results {
			out.add(r, len(results) == 0)
		}
		out.flush()
	}()

	sc := bufio.NewScanner(a.stdin)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	sent := make([]uint64, parts)
	lines := 0
	for ctx.Err() == nil && !out.stopped() && sc.Scan() {
		payload := bytes.Clone(sc.Bytes())
		if payload == nil {
			payload = []byte{}
		}
		m := o.message(lines, payload)
		part := keyPart
		if part < 0 {
			part = (firstPart + lines/chunk) % parts
		}
		lines++
		seq := sent[part]
		sent[part]++
		win.acquire(len(payload))
		err := c.PublishAsync(ctx, topic, part, []walmq.Message{m}, func(acks []walmq.PublishAck, err error) {
			r := pubResult{part: part, seq: seq, payload: payload, err: err}
			if err == nil {
				r.ack = acks[0]
			}
			results <- r
		})
		if err != nil {
			results <- pubResult{part: part, seq: seq, payload: payload, err: err}
		}
	}
	readErr := sc.Err()
	win.wait()
	close(results)
	<-printed

	switch {
	case out.failed > 0:
		return fmt.Errorf("%d of %d publishes failed (input read up to line %d); the first error: %w",
			out.failed, out.failed+out.acked, lines, out.firstErr)
	case out.outErr != nil:
		return fmt.Errorf("writing acks: %w", out.outErr)
	case errors.Is(readErr, bufio.ErrTooLong):
		return fmt.Errorf("line %d of the input is longer than 1 MiB; the %d lines before it were published", lines+1, lines)
	case readErr != nil:
		return fmt.Errorf("reading the input after line %d (published): %w", lines, readErr)
	}
	return ctx.Err()
}

// ackPrinter prints the acks of pubLines in input order within each
// partition: the node may answer a partition's batches out of order (it
// waits for several Raft entries at once), so an ack that overtakes an
// earlier line of its partition is held until that line's outcome is
// known, which is a moment later (Raft commits entries in order).
type ackPrinter struct {
	w    *bufio.Writer
	show bool
	win  *window
	next []uint64               // per partition, the next line to print
	held []map[uint64]pubResult // per partition, results waiting for earlier ones

	mu       sync.Mutex // guards the fields below, read by the reader
	failed   int
	acked    int
	firstErr error
	outErr   error
}

// add takes one result; flush says to flush the output after it.
func (p *ackPrinter) add(r pubResult, flush bool) {
	p.mu.Lock()
	if r.err != nil {
		p.failed++
		if p.firstErr == nil {
			p.firstErr = r.err
		}
	} else {
		p.acked++
	}
	p.mu.Unlock()
	if r.seq == p.next[r.part] {
		for ok := true; ok; r, ok = p.held[r.part][p.next[r.part]] {
			delete(p.held[r.part], r.seq)
			if r.err == nil && p.show {
				writeAck(p.w, r.ack, r.payload)
			}
			p.next[r.part]++
			p.win.release(len(r.payload))
		}
	} else {
		if p.held[r.part] == nil {
			p.held[r.part] = map[uint64]pubResult{}
		}
		p.held[r.part][r.seq] = r
	}
	if flush {
		p.flush()
	}
}

func (p *ackPrinter) flush() {
	if err := p.w.Flush(); err != nil {
		p.mu.Lock()
		p.outErr = err
		p.mu.Unlock()
	}
}

// stopped reports whether a publish failed or the output broke: then no
// more lines are sent.
func (p *ackPrinter) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed > 0 || p.outErr != nil
}

// window bounds the messages and bytes in flight. A message larger than
// the byte bound is let through alone.
type window struct {
	mu                sync.Mutex
	cond              sync.Cond
	msgs, bytes       int
	maxMsgs, maxBytes int
}

func newWindow(maxMsgs, maxBytes int) *window {
	w := &window{maxMsgs: maxMsgs, maxBytes: maxBytes}
	w.cond.L = &w.mu
	return w
}

func (w *window) acquire(n int) {
	w.mu.Lock()
	for w.msgs >= w.maxMsgs || (w.msgs > 0 && w.bytes+n > w.maxBytes) {
		w.cond.Wait()
	}
	w.msgs++
	w.bytes += n
	w.mu.Unlock()
}

func (w *window) release(n int) {
	w.mu.Lock()
	w.msgs--
	w.bytes -= n
	w.mu.Unlock()
	w.cond.Broadcast()
}

// wait waits until nothing is in flight.
func (w *window) wait() {
	w.mu.Lock()
	for w.msgs > 0 {
		w.cond.Wait()
	}
	w.mu.Unlock()
}
