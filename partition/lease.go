package partition

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/walmq/walmq/journal"
)

// Delivery is a message handed out by Lease.
type Delivery struct {
	journal.Message        // the message; Offset is its offset
	Deliveries      uint32 // 1 on first delivery, +1 on each redelivery
}

// lease is the lease of one handed-out offset. seq names this version of
// it: a heap entry whose seq differs is stale.
type lease struct {
	deadline   int64 // Unix nanoseconds
	seq        uint64
	deliveries uint32
}

// span is the offsets [lo, hi).
type span struct{ lo, hi uint64 }

// leaseState is a group's in-memory delivery state on the leader.
//
// Every leased offset is below cursor and in no gap; offsets at or above
// cursor, and those in gaps, were never handed out (since the last reset).
// A lease is in at most one heap at a time: timers while its deadline is
// ahead, ready once it expired (or was nacked) and until it is handed out
// again. Entries are never removed from a heap except from its top; one
// whose lease was released or replaced is stale, and is skipped and
// dropped when it surfaces or when compact rebuilds the heaps.
type leaseState struct {
	m      map[uint64]lease
	timers entryHeap // by deadline, then offset
	ready  entryHeap // by offset (key 0)
	gaps   []span    // given back below cursor, ascending, disjoint
	cursor uint64
	epoch  uint64 // incremented by every reset; voids reservations in flight
	seq    uint64
}

func (ls *leaseState) init(floor uint64) {
	ls.m = map[uint64]lease{}
	ls.cursor = floor
}

// reset forgets every lease and starts the cursor again at floor.
func (ls *leaseState) reset(floor uint64) {
	clear(ls.m)
	ls.timers = ls.timers[:0]
	ls.ready = ls.ready[:0]
	ls.gaps = nil
	ls.cursor = floor
	ls.epoch++
}

// drop ends the lease of off, if any.
func (ls *leaseState) drop(off uint64) {
	if len(ls.m) > 0 {
		delete(ls.m, off)
	}
}

// dropBelow ends every lease below floor.
func (ls *leaseState) dropBelow(floor uint64) {
	for off := range ls.m {
		if off < floor {
			delete(ls.m, off)
		}
	}
	ls.compact()
}

// valid reports whether a heap entry is the current version of a lease.
func (ls *leaseState) valid(e entry) bool {
	l, ok := ls.m[e.off]
	return ok && l.seq == e.seq
}

// compact rebuilds the heaps without stale entries once these outnumber
// live leases, so memory stays proportional to the leases.
func (ls *leaseState) compact() {
	if len(ls.timers)+len(ls.ready) <= 2*len(ls.m)+1024 {
		return
	}
	ls.timers = slices.DeleteFunc(ls.timers, func(e entry) bool { return !ls.valid(e) })
	ls.timers.init()
	ls.ready = slices.DeleteFunc(ls.ready, func(e entry) bool { return !ls.valid(e) })
	ls.ready.init()
}

// expire moves the leases whose deadline is at or before now to ready, and
// drops stale entries from the top of timers.
func (ls *leaseState) expire(now int64) {
	for len(ls.timers) > 0 {
		e := ls.timers[0]
		if ls.valid(e) {
			if e.key > now {
				return
			}
			ls.ready.push(entry{off: e.off, seq: e.seq})
		}
		ls.timers.pop()
	}
}

// check returns ErrNotPending unless every offset is leased and not
// settled.
func (g *group) check(offsets []uint64) error {
	for _, off := range offsets {
		if _, ok := g.leases.m[off]; !ok || g.settled.has(off) {
			return fmt.Errorf("%w: offset %d", ErrNotPending, off)
		}
	}
	return nil
}

// Release ends the leases of offsets, which the caller is about to settle
// (ack or term): they are not handed out again unless ResetGroup or a new
// leader (ResetLeases) brings them back. An offset whose lease expired but
// was not handed out again may be released. If any offset is not leased
// (never delivered, out of range, released before) or is already settled,
// Release returns ErrNotPending and changes nothing. It returns
// ErrUnknownGroup for an unknown group.
func (p *Partition) Release(group string, offsets []uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return err
	}
	if err := g.check(offsets); err != nil {
		return err
	}
	for _, off := range offsets {
		delete(g.leases.m, off)
	}
	g.leases.compact()
	return nil
}

// Nack makes leased offsets available again at now+delay (delay 0 or less:
// at once); each is handed out again with Deliveries one higher. Errors
// are those of Release, and on error nothing changes.
func (p *Partition) Nack(group string, offsets []uint64, now time.Time, delay time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return err
	}
	if err := g.check(offsets); err != nil {
		return err
	}
	ls := &g.leases
	at := now.Add(delay).UnixNano()
	for _, off := range offsets {
		l := ls.m[off]
		ls.seq++
		l.seq, l.deadline = ls.seq, at
		ls.m[off] = l
		if delay <= 0 {
			ls.ready.push(entry{off: off, seq: l.seq})
		} else {
			ls.timers.push(entry{key: at, off: off, seq: l.seq})
		}
	}
	ls.compact()
	return nil
}

// ResetLeases drops every lease and delivery cursor of every group, as a
// new leader must: every offset at or above a group's floor that is not
// settled will be handed out again, with Deliveries starting again at 1.
func (p *Partition) ResetLeases() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.groups {
		g.leases.reset(g.settled.floor)
	}
}

// Leased is the number of offsets of group with a lease, live or expired;
// 0 for an unknown group.
func (p *Partition) Leased(group string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groups[group]
	if !ok {
		return 0
	}
	return len(g.leases.m)
}

// Lease hands out up to maxMsgs messages to a consumer of group, each with
// a lease whose deadline is now+ackWait. First come the group's expired
// leases (deadline at or before now, or nacked), in offset order, each
// with Deliveries one higher, skipping those settled meanwhile; then
// messages never handed out, from the group's delivery cursor upward
// (starting at the floor, skipping settled offsets, stopping at the
// watermark), with Deliveries 1. An offset leased and not expired is never
// handed out twice, so consumers sharing a group get disjoint messages,
// and one consumer calling Lease repeatedly sees new messages in offset
// order. maxBytes limits the total size as in journal.Read (0: no limit;
// at least one message). It returns ErrUnknownGroup for an unknown group
// and ErrClosed after Close.
//
// The journal is read without holding the partition's lock: Lease reserves
// offsets, reads them, then records the leases of what it hands out and
// gives back the rest.
func (p *Partition) Lease(group string, now time.Time, ackWait time.Duration, maxMsgs, maxBytes int) ([]Delivery, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	first := p.j.FirstOffset()
	wm := p.wm.Load()
	p.mu.Lock()
	g, err := p.group(group)
	if err != nil || maxMsgs <= 0 {
		p.mu.Unlock()
		return nil, err
	}
	r := g.reserve(now.UnixNano(), now.Add(ackWait).UnixNano(), first, wm, maxMsgs)
	p.mu.Unlock()

	f := p.fetch(r, maxBytes)

	p.mu.Lock()
	out := g.commit(r, f)
	p.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return out, nil
}

// reservation is what Lease took under the lock before reading.
type reservation struct {
	epoch    uint64
	deadline int64
	redo     []redo   // expired leases to hand out again, ascending offsets
	runs     []span   // never-delivered offsets to hand out, ascending
	srcs     []source // where runs came from, ascending
}

// redo is an expired lease being handed out again: its lease already has
// the new deadline, seq and delivery count; prev is what it had before.
type redo struct {
	off, seq uint64
	prev     lease
}

// source is a span of never-delivered offsets a reservation consumed: from
// the delivery cursor or from a gap.
type source struct {
	span
	cursor bool
}

// reserve takes up to n offsets for Lease. Call with mu held.
func (g *group) reserve(now, deadline int64, first, wm uint64, n int) *reservation {
	ls := &g.leases
	r := &reservation{epoch: ls.epoch, deadline: deadline}
	ls.expire(now)
	for len(r.redo) < n && len(ls.ready) > 0 {
		e := ls.ready.pop()
		l, ok := ls.m[e.off]
		if !ok || l.seq != e.seq {
			continue
		}
		if e.off < first || g.settled.has(e.off) {
			delete(ls.m, e.off)
			continue
		}
		ls.seq++
		r.redo = append(r.redo, redo{off: e.off, seq: ls.seq, prev: l})
		ls.m[e.off] = lease{deadline: deadline, seq: ls.seq, deliveries: l.deliveries + 1}
	}
	need := n - len(r.redo)
	lo := max(g.settled.floor, first)
	for need > 0 && len(ls.gaps) > 0 {
		gp := &ls.gaps[0]
		start := max(gp.lo, lo)
		end := gp.hi
		if start < gp.hi {
			end, r.runs, need = g.settled.take(start, gp.hi, need, r.runs)
			r.srcs = append(r.srcs, source{span{start, end}, false})
		}
		if end >= gp.hi {
			ls.gaps = ls.gaps[1:]
		} else {
			gp.lo = end
		}
	}
	if need > 0 {
		start := max(ls.cursor, lo)
		var end uint64
		end, r.runs, _ = g.settled.take(start, wm, need, r.runs)
		if end > start {
			r.srcs = append(r.srcs, source{span{start, end}, true})
		}
		ls.cursor = max(ls.cursor, end)
	}
	return r
}

// fetched is what Lease read for a reservation.
type fetched struct {
	out   []Delivery // the redo messages read, then the new ones
	nRedo int        // how many of out are redo messages
	// next is the first never-delivered offset of the reservation that was
	// not read because of the byte limit: it and everything reserved
	// above it is given back. math.MaxUint64 when nothing was cut.
	next uint64
	err  error
}

// fetch reads the messages of a reservation with Read, without holding
// mu. Offsets deleted by retention meanwhile are skipped.
func (p *Partition) fetch(r *reservation, maxBytes int) fetched {
	f := fetched{next: math.MaxUint64}
	used := 0
	full := false
	// read appends [lo, hi) to f.out and returns the first offset it did
	// not append because of the byte limit (hi if none).
	read := func(lo, hi uint64) (uint64, error) {
		for lo < hi {
			budget := 0
			switch {
			case maxBytes > 0:
				budget = max(maxBytes-used, 1)
			case hi-lo == 1:
				// One message: a small budget makes the journal read a
				// small chunk instead of 256 KiB; it returns one anyway.
				budget = 1
			}
			msgs, err := p.Read(lo, int(hi-lo), budget)
			if err != nil {
				if errors.Is(err, journal.ErrOffsetTruncated) {
					// Retention deleted lo meanwhile: go on from what is left.
					lo = max(lo+1, p.j.FirstOffset())
					continue
				}
				return lo, err
			}
			if len(msgs) == 0 {
				full = true
				return lo, nil
			}
			for i := range msgs {
				m := &msgs[i]
				size := journal.MessageSize(m)
				if maxBytes > 0 && len(f.out) > 0 && used+size > maxBytes {
					full = true
					return m.Offset, nil
				}
				used += size
				f.out = append(f.out, Delivery{Message: *m})
			}
			lo = msgs[len(msgs)-1].Offset + 1
		}
		return hi, nil
	}
	n := len(r.redo)
	for _, s := range r.runs {
		n += int(s.hi - s.lo)
	}
	f.out = make([]Delivery, 0, min(n, 4096))
	for i := 0; i < len(r.redo) && !full; {
		k := i + 1
		for k < len(r.redo) && r.redo[k].off == r.redo[k-1].off+1 {
			k++
		}
		if _, f.err = read(r.redo[i].off, r.redo[k-1].off+1); f.err != nil {
			return f
		}
		i = k
	}
	f.nRedo = len(f.out)
	if full {
		f.next = 0
		return f
	}
	for _, s := range r.runs {
		var stop uint64
		if stop, f.err = read(s.lo, s.hi); f.err != nil {
			return f
		}
		if full {
			f.next = stop
			return f
		}
	}
	return f
}

// commit records the leases of what fetch read and gives back the rest of
// the reservation. It returns the deliveries to hand out: those read,
// less any settled, released, nacked or reset meanwhile. Call with mu
// held.
func (g *group) commit(r *reservation, f fetched) []Delivery {
	ls := &g.leases
	if f.err != nil {
		f.out, f.nRedo, f.next = f.out[:0], 0, 0
	}
	keep := f.out[:0]
	ri := 0
	for _, d := range f.out[:f.nRedo] {
		for r.redo[ri].off != d.Offset {
			ls.giveBack(r.redo[ri])
			ri++
		}
		rd := r.redo[ri]
		ri++
		l, ok := ls.m[rd.off]
		if !ok || l.seq != rd.seq {
			continue
		}
		if g.settled.has(rd.off) {
			delete(ls.m, rd.off)
			continue
		}
		ls.timers.push(entry{key: l.deadline, off: rd.off, seq: rd.seq})
		d.Deliveries = l.deliveries
		keep = append(keep, d)
	}
	for ; ri < len(r.redo); ri++ {
		ls.giveBack(r.redo[ri])
	}
	if ls.epoch != r.epoch {
		return keep
	}
	for _, d := range f.out[f.nRedo:] {
		if g.settled.has(d.Offset) {
			continue
		}
		ls.seq++
		ls.m[d.Offset] = lease{deadline: r.deadline, seq: ls.seq, deliveries: 1}
		ls.timers.push(entry{key: r.deadline, off: d.Offset, seq: ls.seq})
		d.Deliveries = 1
		keep = append(keep, d)
	}
	for i := len(r.srcs) - 1; i >= 0; i-- {
		s := r.srcs[i]
		lo := max(s.lo, f.next)
		if lo >= s.hi {
			continue
		}
		if s.cursor && ls.cursor == s.hi {
			ls.cursor = lo
		} else {
			ls.addGap(span{lo, s.hi})
		}
	}
	return keep
}

// giveBack restores an expired lease that Lease reserved but did not hand
// out, unless it changed meanwhile.
func (ls *leaseState) giveBack(rd redo) {
	if l, ok := ls.m[rd.off]; !ok || l.seq != rd.seq {
		return
	}
	ls.m[rd.off] = lease{deadline: rd.prev.deadline, seq: rd.seq, deliveries: rd.prev.deliveries}
	ls.ready.push(entry{off: rd.off, seq: rd.seq})
}

// addGap records never-delivered offsets given back below the cursor.
func (ls *leaseState) addGap(s span) {
	i, _ := slices.BinarySearchFunc(ls.gaps, s.lo, func(g span, lo uint64) int {
		switch {
		case g.lo < lo:
			return -1
		case g.lo > lo:
			return 1
		}
		return 0
	})
	ls.gaps = slices.Insert(ls.gaps, i, s)
}

// entry is a heap entry naming version seq of the lease of off.
type entry struct {
	key int64 // deadline in timers; 0 in ready
	off uint64
	seq uint64
}

// entryHeap is a binary min-heap of entries by key, then offset.
type entryHeap []entry

func (h entryHeap) less(i, j int) bool {
	return h[i].key < h[j].key || h[i].key == h[j].key && h[i].off < h[j].off
}

func (h *entryHeap) push(e entry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *entryHeap) pop() entry {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	*h = s[:n]
	(*h).down(0)
	return top
}

func (h entryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h entryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}
