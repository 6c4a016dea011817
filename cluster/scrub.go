package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/journal"
)

// Defaults of the scrubber (Config.ScrubInterval, Config.ScrubBytesPerSecond).
const (
	DefaultScrubInterval       = 24 * time.Hour
	DefaultScrubBytesPerSecond = 64 << 20
)

// ErrNoPeer: a damaged segment cannot be repaired because no other member
// can be asked for its records (a single node, or none has announced a
// client address, or none is reachable through the node's PeerRecords).
var ErrNoPeer = errors.New("walmq: no peer to repair from")

// PeerRecords fetches a partition's raw journal records from another
// member, to repair a damaged segment. The gRPC transport implements it
// (with the ReadRecords call of the API) and gives it to the node with
// SetPeerRecords.
type PeerRecords interface {
	// Records calls fn, in order, with each record holding offsets in
	// [from, to) of topic/part as member id, reached at its client address
	// addr, holds them. fn's error ends it and is returned.
	Records(ctx context.Context, id, addr, topic string, part int, from, to uint64, fn func(rec []byte) error) error
}

// SetPeerRecords gives the node the means to fetch records from its peers;
// until it is set, damaged segments are found and refused but not repaired.
func (n *Node) SetPeerRecords(p PeerRecords) {
	n.scrub.peers.Store(&p)
	n.scrub.wakeUp()
}

// ReadRecords calls fn, in order, with each raw journal record of a
// partition holding committed offsets in [from, to), as this node holds
// them, each checked (CRC, messages, contiguous offsets) before it is
// passed on: a damaged one ends the read with its *journal.CorruptionError
// (and queues its segment for repair here), so a node never ships a record
// that fails its checks. Peers call it to repair their own damaged
// segments.
func (n *Node) ReadRecords(ctx context.Context, topic string, part int, from, to uint64, fn func(rec []byte) error) error {
	select {
	case <-n.ctx.Done():
		return ErrClosed
	default:
	}
	p, err := n.fsm.Partition(topic, part)
	if err != nil {
		return err
	}
	if from > to {
		return fmt.Errorf("%w: offsets [%d, %d)", ErrInvalidArgument, from, to)
	}
	return p.Journal().ReadRecords(ctx, from, min(to, p.Watermark()), fn)
}

// DamagedSegment is a sealed journal segment that holds a damaged record
// and is not repaired yet: reads that reach the damage are refused.
type DamagedSegment struct {
	Topic       string
	Partition   int
	Segment     string // path of the segment file
	Position    int64  // byte position of the damaged record in it
	Reason      string
	First, Next uint64 // the segment's offsets [First, Next)
}

// scrubber verifies every sealed segment in the background at a bounded
// rate, once after start and then every ScrubInterval, and repairs the
// damaged ones from peers.
type scrubber struct {
	n      *Node
	topics string // the state machine's directory, parent of every journal
	pace   pacer

	peers    atomic.Pointer[PeerRecords]
	repaired atomic.Uint64
	passes   atomic.Uint64

	mu      sync.Mutex
	pending map[damageKey]journal.Damage // to repair
	refused map[damageKey]bool           // could not be repaired; logged once
	wake    chan struct{}
}

type damageKey struct {
	dir  string
	base uint64
}

// scrubDefaults fills the scrubber's fields of a Config.
func (c *Config) scrubDefaults() {
	if c.ScrubInterval == 0 {
		c.ScrubInterval = DefaultScrubInterval
	}
	if c.ScrubBytesPerSecond <= 0 {
		c.ScrubBytesPerSecond = DefaultScrubBytesPerSecond
	}
}

func newScrubber(n *Node) *scrubber {
	return &scrubber{n: n, topics: filepath.Join(n.cfg.Dir, "topics"), pace: pacer{rate: float64(n.cfg.ScrubBytesPerSecond)},
		pending: map[damageKey]journal.Damage{}, refused: map[damageKey]bool{}, wake: make(chan struct{}, 1)}
}

// start runs the scrub passes and the repairs until Close.
func (s *scrubber) start() {
	s.n.bg.Add(2)
	go s.scrubLoop()
	go s.repairLoop()
}

func (s *scrubber) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// where names a journal directory's topic and partition.
func (s *scrubber) where(dir string) (string, int, bool) {
	rel, err := filepath.Rel(s.topics, dir)
	if err != nil {
		return "", 0, false
	}
	topic, p := filepath.Split(rel)
	part, err := strconv.Atoi(p)
	if err != nil || topic == "" {
		return "", 0, false
	}
	return filepath.Clean(topic), part, true
}

// damaged is the journals' OnDamage: it queues the segment for repair. It
// may be called with the state machine's locks held: it takes only its
// own.
func (s *scrubber) damaged(d journal.Damage) {
	topic, part, _ := s.where(d.Dir)
	s.n.log.Error("damaged segment: its damaged records are refused until it is repaired from a peer",
		"topic", topic, "partition", part, "segment", d.Err.Segment, "position", d.Err.Offset,
		"first", d.BaseOffset, "next", d.NextOffset, "reason", d.Err.Reason)
	s.mu.Lock()
	s.pending[damageKey{d.Dir, d.BaseOffset}] = d
	s.mu.Unlock()
	s.wakeUp()
}

// journals lists every partition's journal now.
func (s *scrubber) journals() []*journal.Journal {
	var out []*journal.Journal
	for _, name := range s.n.fsm.TopicNames() {
		count, err := s.n.fsm.PartitionCount(name)
		if err != nil {
			continue
		}
		for i := range count {
			if p, err := s.n.fsm.Partition(name, i); err == nil {
				out = append(out, p.Journal())
			}
		}
	}
	return out
}

// status lists the damaged segments of every journal and counts the
// repairs and complete scrub passes since start.
func (s *scrubber) status() (damaged []DamagedSegment, repaired, passes uint64) {
	for _, j := range s.journals() {
		for _, d := range j.Damaged() {
			topic, part, _ := s.where(d.Dir)
			damaged = append(damaged, DamagedSegment{Topic: topic, Partition: part, Segment: d.Err.Segment,
				Position: d.Err.Offset, Reason: d.Err.Reason, First: d.BaseOffset, Next: d.NextOffset})
		}
	}
	return damaged, s.repaired.Load(), s.passes.Load()
}

func (s *scrubber) scrubLoop() {
	defer s.n.bg.Done()
	ctx := s.n.bgCtx
	for {
		s.pass(ctx)
		if s.n.cfg.ScrubInterval < 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.n.cfg.ScrubInterval):
		}
	}
}

// pass scrubs every sealed segment once.
func (s *scrubber) pass(ctx context.Context) {
	start := time.Now()
	var segments int
	var bytes int64
	for _, j := range s.journals() {
		for _, d := range j.Damaged() {
			s.queue(d)
		}
		for _, seg := range j.Segments() {
			if !seg.Sealed || seg.Damage != nil {
				continue
			}
			err := j.Scrub(ctx, seg.BaseOffset, s.pace.wait)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				segments++
				bytes += seg.Size
			case errors.Is(err, journal.ErrCorrupt):
				// Recorded by the journal, which called damaged.
			case errors.Is(err, journal.ErrOffsetTruncated), errors.Is(err, journal.ErrNoSegment),
				errors.Is(err, journal.ErrClosed):
				// Deleted by retention, or its topic was.
			default:
				s.n.log.Warn("scrub failed", "segment", seg.Path, "error", err)
			}
		}
	}
	s.passes.Add(1)
	damaged, _, _ := s.status()
	s.n.log.Info("scrub pass complete", "segments", segments, "bytes", bytes, "damaged", len(damaged),
		"took", time.Since(start).Round(time.Millisecond))
}

// queue queues d for repair without logging it again.
func (s *scrubber) queue(d journal.Damage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[damageKey{d.Dir, d.BaseOffset}]; !ok {
		s.pending[damageKey{d.Dir, d.BaseOffset}] = d
		s.wakeUp()
	}
}

// repairLoop repairs the queued segments, one at a time, retrying those
// that could not be repaired yet (no peer answered, or none held the
// records yet) with a backoff up to a minute.
func (s *scrubber) repairLoop() {
	defer s.n.bg.Done()
	ctx := s.n.bgCtx
	backoff := time.Second
	for {
		s.mu.Lock()
		keys := make([]damageKey, 0, len(s.pending))
		for k := range s.pending {
			keys = append(keys, k)
		}
		s.mu.Unlock()
		slices.SortFunc(keys, func(a, b damageKey) int {
			return cmp.Or(cmp.Compare(a.dir, b.dir), cmp.Compare(a.base, b.base))
		})
		failed := false
		for _, k := range keys {
			s.mu.Lock()
			d, ok := s.pending[k]
			s.mu.Unlock()
			if !ok {
				continue
			}
			err := s.repair(ctx, d)
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			switch {
			case err == nil || errors.Is(err, errGone):
				delete(s.pending, k)
				delete(s.refused, k)
			default:
				failed = true
				if !s.refused[k] {
					s.refused[k] = true
					topic, part, _ := s.where(d.Dir)
					s.n.log.Error("damaged segment not repaired yet: its damaged records stay refused; retrying",
						"topic", topic, "partition", part, "segment", d.Err.Segment, "position", d.Err.Offset, "error", err)
				}
			}
			s.mu.Unlock()
		}
		var retry <-chan time.Time
		if failed {
			retry = time.After(backoff)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry:
		}
	}
}

// errGone: the damaged segment no longer exists (retention deleted it, or
// its topic was deleted), so there is nothing left to repair.
var errGone = errors.New("segment gone")

// repair replaces the damaged segment d with records fetched from the
// other members, one after another, until one gives a replacement the
// journal accepts; then it links the repaired file into the snapshots
// that held the damaged one.
func (s *scrubber) repair(ctx context.Context, d journal.Damage) error {
	topic, part, ok := s.where(d.Dir)
	if !ok {
		return errGone
	}
	p, err := s.n.fsm.Partition(topic, part)
	if err != nil || p.Journal().Dir() != d.Dir {
		return errGone
	}
	j := p.Journal()
	src := s.peers.Load()
	var peers []raft.Server
	for _, m := range s.n.servers() {
		if string(m.ID) != s.n.cfg.NodeID && s.n.fsm.ClientAddr(string(m.ID)) != "" {
			peers = append(peers, m)
		}
	}
	if src == nil || len(peers) == 0 {
		return ErrNoPeer
	}
	path := d.Err.Segment
	var errs []error
	for _, m := range peers {
		// The damaged file, kept open across the swap: the snapshots that
		// link it are found by it.
		old, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("cluster: repair %s: %w", path, err)
		}
		err = s.repairFrom(ctx, *src, m, j, d, topic, part)
		if err == nil {
			s.repaired.Add(1)
			s.n.log.Warn("repaired damaged segment from a peer", "topic", topic, "partition", part, "segment", path,
				"position", d.Err.Offset, "first", d.BaseOffset, "next", d.NextOffset, "peer", m.ID)
			if n, err := s.n.snaps.ReplaceFile(old, path); err != nil {
				s.n.log.Error("repaired segment not relinked into every snapshot; those snapshots refuse to ship it",
					"segment", path, "error", err)
			} else if n > 0 {
				s.n.log.Info("relinked the repaired segment into snapshots", "segment", path, "links", n)
			}
			return nil
		}
		old.Close()
		if errors.Is(err, journal.ErrOffsetTruncated) || errors.Is(err, journal.ErrNoSegment) || errors.Is(err, journal.ErrClosed) {
			return errGone
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.n.log.Warn("repair from peer failed", "topic", topic, "partition", part, "segment", path, "peer", m.ID, "error", err)
		errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
	}
	return errors.Join(errs...)
}

func (s *scrubber) repairFrom(ctx context.Context, src PeerRecords, m raft.Server, j *journal.Journal, d journal.Damage,
	topic string, part int) error {
	r, err := j.BeginReplace(d.BaseOffset)
	if err != nil {
		return err
	}
	first, next := r.Range()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := src.Records(ctx, string(m.ID), s.n.fsm.ClientAddr(string(m.ID)), topic, part, first, next, r.Append); err != nil {
		r.Abort()
		return err
	}
	return r.Commit()
}

// pacer bounds a rate of bytes per second.
type pacer struct {
	rate float64

	mu   sync.Mutex
	next time.Time // when the bytes taken so far are paid for
}

// wait takes n bytes and waits until the rate allows them.
func (p *pacer) wait(ctx context.Context, n int) error {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	d := p.next.Sub(now)
	p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
