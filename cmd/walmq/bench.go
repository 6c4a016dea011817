package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walmq/walmq"
)

const benchHelp = `Creates the topic if it is missing (if it exists, it is used as it is),
then publishes --n messages of --size bytes from --producers concurrent
producers, each with its own connection and --window publishes in flight
(producer i publishes to partition i mod partitions). Each publish's
latency is measured from the call to its ack. Then one new consumer group
(bench-<unix nanos>, created before publishing at the latest offset, so
it sees exactly this run's messages) fetches 1,000 at a time and acks
everything (a batch while the next is fetched), until --n messages are
consumed or 30 s pass with nothing new; the group is deleted at the end.

--json prints one line with the same fields, and the same definitions,
as the NATS JetStream bench it is compared with:
  publish_msgs_per_s  published / time from the first publish to the last ack
  publish_p50_ms      median publish latency (ms, microsecond resolution)
  publish_p99_ms      99th percentile: sorted latencies at index int(0.99*(len-1))
  consume_msgs_per_s  consumed / time from the first fetch to the last ack
  published           messages published (acked or failed)
  consumed            messages consumed
  failed              publishes that failed
and one more, walmq's own:
  max_ack_gap_ms      the longest time without any publish acknowledged
                      (e.g. across a leader change in a cluster)
  retried             publishes sent again after the cluster had no
                      leader or lost the node they went through

A retried publish whose first try was stored after all is stored twice:
bench messages carry no ID, as in the NATS bench. --ids gives every
message its own ID (<group>-<producer>-<n>), so the topic's dedup window
answers such a retry with the first copy, and the consume phase checks
every acknowledged message by its ID (use it to check that a fault such
as a leader kill loses nothing). It adds these fields:
  distinct            distinct IDs consumed
  duplicates          messages consumed whose ID was consumed before
  lost                acknowledged messages whose ID was never consumed
With --ids, bench exits 1 if any acknowledged message is lost.
`

type benchOptions struct {
	topic      string
	partitions int
	size       int
	n          int
	producers  int
	window     int
	json       bool
	ids        bool
}

// benchResult is the line bench --json prints.
type benchResult struct {
	PublishMsgsPerS float64 `json:"publish_msgs_per_s"`
	PublishP50Ms    float64 `json:"publish_p50_ms"`
	PublishP99Ms    float64 `json:"publish_p99_ms"`
	ConsumeMsgsPerS float64 `json:"consume_msgs_per_s"`
	Published       int     `json:"published"`
	Consumed        int     `json:"consumed"`
	Failed          int64   `json:"failed"`
	MaxAckGapMs     float64 `json:"max_ack_gap_ms"`
	Retried         int64   `json:"retried"`
	// With --ids only.
	Distinct   *int `json:"distinct,omitempty"`
	Duplicates *int `json:"duplicates,omitempty"`
	Lost       *int `json:"lost,omitempty"`
}

// errLost: bench --ids found an acknowledged message missing.
var errLost = errors.New("acknowledged messages are missing")

// retryFor bounds how long bench retries one publish.
const retryFor = 30 * time.Second

// benchRetryable: the cluster had no leader, or the node the publish went
// through went away. A retried publish whose first try was stored after
// all is stored twice (bench messages carry no ids): consumed may then
// exceed published - failed.
func benchRetryable(err error) bool {
	return errors.Is(err, walmq.ErrNotLeader) || errors.Is(err, walmq.ErrTimeout) || errors.Is(err, walmq.ErrUnavailable)
}

// idleLimit ends the consume phase when nothing new came for this long.
const idleLimit = 30 * time.Second

func bench(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	var o benchOptions
	fs.StringVar(&o.topic, "topic", "bench", "topic (created if missing)")
	fs.IntVar(&o.partitions, "partitions", 1, "partitions of the topic when it is created")
	fs.IntVar(&o.size, "size", 128, "message size in bytes")
	fs.IntVar(&o.n, "n", 200000, "messages to publish")
	fs.IntVar(&o.producers, "producers", 16, "concurrent producers, one connection each")
	fs.IntVar(&o.window, "window", 64, "publishes in flight per producer")
	fs.BoolVar(&o.json, "json", false, "print one line of JSON")
	fs.BoolVar(&o.ids, "ids", false, "give every message an ID, and check every acknowledged one by it when consuming")
	return func(ctx context.Context, a *app, _ []string) error {
		switch {
		case o.partitions < 1:
			return usagef("--partitions must be at least 1")
		case o.size < 0 || o.size > 1<<20:
			return usagef("--size must be 0 to 1048576")
		case o.n < 1:
			return usagef("--n must be at least 1")
		case o.producers < 1:
			return usagef("--producers must be at least 1")
		case o.window < 1:
			return usagef("--window must be at least 1")
		}
		return a.withClient(ctx, func(c *walmq.Client) error { return runBench(ctx, a, c, o) })
	}
}

func runBench(ctx context.Context, a *app, admin *walmq.Client, o benchOptions) error {
	var ti walmq.TopicInfo
	err := a.call(ctx, func(ctx context.Context) error {
		err := admin.CreateTopic(ctx, o.topic, walmq.TopicConfig{Partitions: o.partitions})
		if err != nil && !errors.Is(err, walmq.ErrTopicExists) {
			return err
		}
		ti, err = admin.DescribeTopic(ctx, o.topic)
		return err
	})
	if err != nil {
		return err
	}
	parts := len(ti.Partitions)
	if parts != o.partitions && !o.json {
		fmt.Fprintf(a.stderr, "topic %s exists with %d partitions: using them\n", o.topic, parts)
	}
	group := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	err = a.call(ctx, func(ctx context.Context) error {
		return admin.CreateGroup(ctx, o.topic, group, walmq.GroupConfig{StartAt: walmq.StartLatest})
	})
	if err != nil {
		return err
	}
	defer a.call(context.WithoutCancel(ctx), func(ctx context.Context) error { return admin.DeleteGroup(ctx, o.topic, group) })

	prog := newProgress(a.stderr, o.n)
	defer prog.stop()
	var ids *benchIDs
	if o.ids {
		ids = newBenchIDs(group, o)
	}
	res, err := benchPublish(ctx, a, o, parts, prog, ids)
	if err != nil {
		return err
	}
	// Publishes that failed may or may not be stored: drain what is sure.
	consumed, conDur, err := benchConsume(ctx, admin, o.topic, group, o.n-int(res.Failed), prog, ids)
	if err != nil {
		return err
	}
	prog.stop()
	res.Consumed = consumed
	res.ConsumeMsgsPerS = float64(consumed) / conDur.Seconds()
	if ids != nil {
		distinct, dups, lost := ids.counts()
		res.Distinct, res.Duplicates, res.Lost = &distinct, &dups, &lost
	}

	if o.json {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(a.stdout, "%s\n", b); err != nil {
			return err
		}
		return lostErr(res)
	}
	fmt.Fprintf(a.stdout, "published %d messages of %d bytes (%d producers x %d in flight, %s): %.0f msg/s, %.1f MB/s\n",
		res.Published, o.size, o.producers, o.window, plural(parts, "partition"), res.PublishMsgsPerS, res.PublishMsgsPerS*float64(o.size)/1e6)
	fmt.Fprintf(a.stdout, "publish latency: p50 %.3f ms, p99 %.3f ms; %d failed; longest time without an ack %.0f ms\n",
		res.PublishP50Ms, res.PublishP99Ms, res.Failed, res.MaxAckGapMs)
	fmt.Fprintf(a.stdout, "consumed %d messages: %.0f msg/s\n", res.Consumed, res.ConsumeMsgsPerS)
	if res.Lost != nil {
		fmt.Fprintf(a.stdout, "by ID: %d distinct consumed, %d duplicates, %d acknowledged and lost\n",
			*res.Distinct, *res.Duplicates, *res.Lost)
	}
	return lostErr(res)
}

func lostErr(res benchResult) error {
	if res.Lost != nil && *res.Lost > 0 {
		return fmt.Errorf("%w: %d", errLost, *res.Lost)
	}
	return nil
}

// benchIDs names every message of a bench --ids run and records which
// were acknowledged and which consumed.
type benchIDs struct {
	prefix string
	mu     sync.Mutex
	acked  [][]bool // [producer][k]
	seen   [][]bool
	dups   int
	unseen int // acknowledged, not yet consumed
}

func newBenchIDs(group string, o benchOptions) *benchIDs {
	b := &benchIDs{prefix: group + "-", acked: make([][]bool, o.producers), seen: make([][]bool, o.producers)}
	for p := range o.producers {
		count := o.n / o.producers
		if p < o.n%o.producers {
			count++
		}
		b.acked[p], b.seen[p] = make([]bool, count), make([]bool, count)
	}
	return b
}

func (b *benchIDs) id(p, k int) string { return b.prefix + strconv.Itoa(p) + "-" + strconv.Itoa(k) }

func (b *benchIDs) ack(p, k int) {
	b.mu.Lock()
	if !b.acked[p][k] && !b.seen[p][k] {
		b.unseen++
	}
	b.acked[p][k] = true
	b.mu.Unlock()
}

// consumed records a consumed message's ID and reports whether it is new.
// An ID that is not this run's counts as a duplicate.
func (b *benchIDs) consumed(id string) bool {
	ps, ks, ok := strings.Cut(strings.TrimPrefix(id, b.prefix), "-")
	p, perr := strconv.Atoi(ps)
	k, kerr := strconv.Atoi(ks)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !ok || !strings.HasPrefix(id, b.prefix) || perr != nil || kerr != nil ||
		p < 0 || p >= len(b.seen) || k < 0 || k >= len(b.seen[p]) || b.seen[p][k] {
		b.dups++
		return false
	}
	b.seen[p][k] = true
	if b.acked[p][k] {
		b.unseen--
	}
	return true
}

// allSeen reports whether every acknowledged message was consumed.
func (b *benchIDs) allSeen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unseen == 0
}

func (b *benchIDs) counts() (distinct, dups, lost int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.seen {
		for k, s := range b.seen[p] {
			if s {
				distinct++
			} else if b.acked[p][k] {
				lost++
			}
		}
	}
	return distinct, b.dups, lost
}

// benchPublish runs the producers and measures them.
func benchPublish(ctx context.Context, a *app, o benchOptions, parts int, prog *progress, ids *benchIDs) (benchResult, error) {
	clients := make([]*walmq.Client, o.producers)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	// Keep each request under the client's 64 MiB limit: it batches up
	// to MaxBatch messages whatever their size.
	maxBatch := min(1000, max(1, (32<<20)/max(o.size, 1)))
	for i := range clients {
		c, err := a.dialWith(ctx, walmq.DialOptions{MaxBatch: maxBatch})
		if err != nil {
			return benchResult{}, err
		}
		clients[i] = c
	}
	payload := make([]byte, o.size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	lat := make([][]time.Duration, o.producers)
	start := time.Now()
	var failed, retried atomic.Int64
	// The longest stretch without an ack: lastAck and maxGap in
	// nanoseconds since start.
	var lastAck, maxGap atomic.Int64
	acked := func() {
		now := int64(time.Since(start))
		prev := lastAck.Swap(now)
		for g := now - prev; ; {
			m := maxGap.Load()
			if g <= m || maxGap.CompareAndSwap(m, g) {
				break
			}
		}
	}
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	var wg sync.WaitGroup
	for p := range o.producers {
		count := o.n / o.producers
		if p < o.n%o.producers {
			count++
		}
		lat[p] = make([]time.Duration, count)
		bp := &benchProducer{ctx: ctx, c: clients[p], topic: o.topic, part: p % parts,
			msgs: []walmq.Message{{Payload: payload}}, lat: lat[p], sem: make(chan struct{}, o.window),
			prog: prog, acked: acked, fail: fail, retried: &retried, ids: ids, p: p}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range count {
				bp.sem <- struct{}{}
				bp.publish(k, time.Now())
			}
			for range o.window {
				bp.sem <- struct{}{}
			}
		}()
	}
	wg.Wait()
	pubDur := time.Since(start)

	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(q float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000
	}
	res := benchResult{
		Published:       o.n,
		Failed:          failed.Load(),
		PublishMsgsPerS: float64(o.n) / pubDur.Seconds(),
		PublishP50Ms:    pct(0.50),
		PublishP99Ms:    pct(0.99),
		MaxAckGapMs:     float64(maxGap.Load()) / 1e6,
		Retried:         retried.Load(),
	}
	if res.Failed > 0 && !o.json {
		fmt.Fprintf(a.stderr, "%d publishes failed; the first error: %v\n", res.Failed, firstErr)
	}
	return res, nil
}

// benchProducer is one producer of benchPublish: up to cap(sem)
// publishes in flight on its own client.
type benchProducer struct {
	ctx     context.Context
	c       *walmq.Client
	topic   string
	part    int
	msgs    []walmq.Message
	lat     []time.Duration // per publish, from the first try to its ack
	sem     chan struct{}   // a slot per publish in flight
	prog    *progress
	acked   func()
	fail    func(error)
	retried *atomic.Int64
	ids     *benchIDs // nil: messages without IDs
	p       int       // this producer's number
}

// publish sends publish k, first tried at t0. A publish that fails
// because the cluster is between leaders, or lost the node it went
// through, is sent again (as a producer would) for up to retryFor; its
// latency counts from the first try.
func (p *benchProducer) publish(k int, t0 time.Time) {
	msgs := p.msgs
	if p.ids != nil {
		msgs = []walmq.Message{{Payload: p.msgs[0].Payload, ID: p.ids.id(p.p, k)}}
	}
	err := p.c.PublishAsync(p.ctx, p.topic, p.part, msgs, func(_ []walmq.PublishAck, err error) {
		if err != nil && benchRetryable(err) && time.Since(t0) < retryFor {
			p.retried.Add(1)
			time.AfterFunc(20*time.Millisecond, func() { p.publish(k, t0) })
			return
		}
		p.lat[k] = time.Since(t0)
		if err != nil {
			p.fail(err)
		} else {
			p.acked()
			if p.ids != nil {
				p.ids.ack(p.p, k)
			}
		}
		p.prog.add(1)
		<-p.sem
	})
	if err != nil {
		p.lat[k] = time.Since(t0)
		p.fail(err)
		<-p.sem
	}
}

// benchConsume drains the group until it got want messages or nothing
// came for idleLimit, and returns how many it got and how long that took
// (up to the last ack). Each batch is acked while the next is fetched.
//
// With ids, it drains until every acknowledged ID was consumed instead.
func benchConsume(ctx context.Context, c *walmq.Client, topic, group string, want int, prog *progress, ids *benchIDs) (int, time.Duration, error) {
	prog.phase("consumed")
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	toAck := make(chan []walmq.Ref, 4)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for refs := range toAck {
			if err := c.Ack(ctx, refs...); err != nil {
				cancel(err)
			}
		}
	}()
	got := 0
	start := time.Now()
	last := start
	var err error
	more := func() bool {
		if ids != nil {
			return !ids.allSeen()
		}
		return got < want
	}
	for more() && time.Since(last) < idleLimit {
		var ds []walmq.Delivery
		if ds, err = c.Fetch(ctx, group, topic, fetchBatch, time.Second); err != nil {
			break
		}
		if len(ds) == 0 {
			continue
		}
		refs := make([]walmq.Ref, len(ds))
		for i, d := range ds {
			refs[i] = d.Ref
			if ids != nil {
				ids.consumed(d.ID)
			}
		}
		toAck <- refs
		got += len(ds)
		prog.add(len(ds))
		last = time.Now()
	}
	close(toAck)
	<-acked
	end := time.Now()
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr // an ack failed, or ctx ended
	}
	if err != nil {
		return got, 0, err
	}
	if got == 0 {
		end = start
	}
	return got, end.Sub(start), nil
}

// progress shows a line on a terminal, updated a few times a second.
type progress struct {
	w     io.Writer // nil: not a terminal
	total int
	done  atomic.Int64
	mu    sync.Mutex
	name  string
	since time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{total: total, name: "published", since: time.Now(), quit: make(chan struct{})}
	if !isTerminal(w) {
		return p
	}
	p.w = w
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				p.mu.Lock()
				name, since := p.name, p.since
				p.mu.Unlock()
				n := p.done.Load()
				fmt.Fprintf(p.w, "\r\033[K%s %d/%d (%.0f msg/s)", name, n, p.total, float64(n)/time.Since(since).Seconds())
			}
		}
	}()
	return p
}

func (p *progress) add(n int) { p.done.Add(int64(n)) }

func (p *progress) phase(name string) {
	p.mu.Lock()
	p.name, p.since = name, time.Now()
	p.done.Store(0)
	p.mu.Unlock()
}

func (p *progress) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.wg.Wait()
	})
}
