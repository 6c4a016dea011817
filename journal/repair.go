package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Errors of scrubbing and repair. Test with errors.Is.
var (
	// ErrNotSealed: the segment is the tail, which is neither scrubbed nor
	// replaced (its recovery is Open's).
	ErrNotSealed = errors.New("journal: segment is not sealed")
	// ErrNoSegment: no segment starts at the offset given.
	ErrNoSegment = errors.New("journal: no segment starts at that offset")
	// ErrBadReplacement: records offered to replace a segment fail their
	// checks; nothing was changed.
	ErrBadReplacement = errors.New("journal: replacement refused")
)

// errReplaced is the internal signal that a segment's file was replaced
// while an operation was about to read it: it starts again on the new one.
var errReplaced = errors.New("journal: segment replaced")

// repairSuffix names the temporary files of a replacement. Open removes
// those a crash left behind.
const repairSuffix = ".repair"

// scanChunk is how much scrubbing and ReadRecords read at a time; a read
// lock on the segment's file is held for one chunk only.
const scanChunk = 1 << 20

// Damage is a sealed segment known to hold a damaged record.
type Damage struct {
	Dir        string // the journal's directory
	BaseOffset uint64 // the segment holds offsets [BaseOffset, NextOffset)
	NextOffset uint64
	Err        *CorruptionError // the first damaged record found: file and byte position
}

// Damaged lists the sealed segments known to be damaged, oldest first.
// A segment is known damaged from the moment Open, a read, ReadRecords,
// Scrub or Verify meets a damaged record in it until Replacement.Commit
// replaces it or retention deletes it.
func (j *Journal) Damaged() []Damage {
	j.mu.RLock()
	defer j.mu.RUnlock()
	var out []Damage
	for _, s := range j.segs {
		if s.damage != nil {
			out = append(out, Damage{Dir: j.dir, BaseOffset: s.base, NextOffset: s.next, Err: s.damage})
		}
	}
	return out
}

// noteDamage records ce, found in s, if s is a sealed segment of the
// journal not yet known to be damaged, logs it and reports it.
func (j *Journal) noteDamage(s *segment, ce *CorruptionError) {
	j.mu.Lock()
	i := j.indexOf(s)
	if i < 0 || i == len(j.segs)-1 || s.damage != nil {
		j.mu.Unlock()
		return
	}
	s.damage = ce
	j.mu.Unlock()
	j.log.Error("damaged record in a sealed segment: reads of it refused until it is repaired",
		"segment", ce.Segment, "at", ce.Offset, "first", s.base, "next", s.next, "reason", ce.Reason)
	j.reportDamage(s, ce)
}

func (j *Journal) reportDamage(s *segment, ce *CorruptionError) {
	if j.opts.OnDamage != nil {
		j.opts.OnDamage(Damage{Dir: j.dir, BaseOffset: s.base, NextOffset: s.next, Err: ce})
	}
}

// indexOf is the position of s in j.segs, or -1. Call with mu held.
func (j *Journal) indexOf(s *segment) int {
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base >= s.base })
	if i < len(j.segs) && j.segs[i] == s {
		return i
	}
	return -1
}

// sealed finds the sealed segment starting at base. Call with mu held.
func (j *Journal) sealed(base uint64) (int, error) {
	if j.closed {
		return -1, ErrClosed
	}
	if base < j.segs[0].base {
		return -1, fmt.Errorf("%w: segment %d, first retained offset %d", ErrOffsetTruncated, base, j.segs[0].base)
	}
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base >= base })
	switch {
	case i == len(j.segs) || j.segs[i].base != base:
		return -1, fmt.Errorf("%w: %d", ErrNoSegment, base)
	case i == len(j.segs)-1:
		return -1, fmt.Errorf("%w: %s", ErrNotSealed, j.segs[i].path)
	}
	return i, nil
}

// readAt reads len(p) bytes at off under the file's read lock, for as
// long as the segment is open.
func (s *segment) readAt(p []byte, off int64) error {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	if s.closed {
		switch {
		case s.replaced:
			return errReplaced
		case s.deleted:
			return fmt.Errorf("%w: segment %s was deleted by retention", ErrOffsetTruncated, s.path)
		}
		return ErrClosed
	}
	if n, err := s.f.ReadAt(p, off); err != nil && !(err == io.EOF && n == len(p)) {
		return fmt.Errorf("journal: read %s: %w", s.path, err)
	}
	return nil
}

// scanRecords reads the records in [start, limit) of the file at path
// through readAt, a chunk at a time, and calls fn with each whole record
// and its position. rec is valid until fn returns. It checks that each
// header parses and that each record ends by limit; fn checks the rest.
// done, if not nil, is asked before each record whether to stop there.
func scanRecords(path string, readAt func(p []byte, off int64) error, start, limit int64, done func() bool, fn func(pos int64, rec []byte) error) error {
	var buf []byte
	need := int64(scanChunk)
	for pos := start; pos < limit; {
		n := min(need, limit-pos)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err := readAt(buf, pos); err != nil {
			return err
		}
		p := 0
		for p < len(buf) {
			if done != nil && done() {
				return nil
			}
			at := pos + int64(p)
			if len(buf)-p < batchHeaderSize {
				if at+batchHeaderSize > limit {
					return &CorruptionError{Segment: path, Offset: at, Reason: fmt.Sprintf("%d bytes after the last record", limit-at)}
				}
				break
			}
			h, err := parseHeader(buf[p:], maxRecordBytes)
			if err != nil {
				return &CorruptionError{Segment: path, Offset: at, Reason: err.Error()}
			}
			if at+int64(h.Length) > limit {
				return &CorruptionError{Segment: path, Offset: at,
					Reason: fmt.Sprintf("record of %d bytes runs past the end at %d", h.Length, limit)}
			}
			if p+int(h.Length) > len(buf) {
				need = max(int64(scanChunk), int64(h.Length))
				break
			}
			if err := fn(at, buf[p:p+int(h.Length)]); err != nil {
				return err
			}
			p += int(h.Length)
		}
		pos += int64(p)
	}
	return nil
}

// checkFull checks a whole record as Verify does: header, CRC, message
// encoding, that it starts at offset expect and that its Raft index is
// above lastIndex. msgs is scratch space, returned for reuse.
func checkFull(rec []byte, expect, lastIndex uint64, msgs []Message) (batchHeader, []Message, error) {
	h, err := checkRecord(rec, maxRecordBytes)
	if err != nil {
		return h, msgs, err
	}
	switch {
	case int(h.Length) != len(rec):
		return h, msgs, fmt.Errorf("record of %d bytes, its header says %d", len(rec), h.Length)
	case h.BaseOffset != expect:
		return h, msgs, fmt.Errorf("batch starts at offset %d, expected %d", h.BaseOffset, expect)
	case h.RaftIndex <= lastIndex:
		return h, msgs, fmt.Errorf("raft index %d not above %d", h.RaftIndex, lastIndex)
	}
	l := readLimits{max: math.MaxInt}
	msgs, _, err = decodeMessages(msgs[:0], &h, rec, &l)
	return h, msgs, err
}

// Scrub reads every record of the sealed segment whose first offset is
// base and checks it as Verify does (CRC, message encoding, offsets
// contiguous from base to the next segment's first, Raft indexes
// increasing). It returns the first damage as a *CorruptionError, and
// records it as Damaged. pace, if not nil, is called with the bytes read
// after each chunk (at most 1 MiB) and may wait to bound the rate; its
// error, or ctx's, ends the scrub. Reads, appends and retention go on
// meanwhile: the file is locked one chunk at a time. A segment replaced
// while it is scrubbed is scrubbed again; one deleted is
// ErrOffsetTruncated.
func (j *Journal) Scrub(ctx context.Context, base uint64, pace func(ctx context.Context, n int) error) error {
	for {
		j.mu.RLock()
		i, err := j.sealed(base)
		if err != nil {
			j.mu.RUnlock()
			return err
		}
		s, size, next := j.segs[i], j.segs[i].size, j.segs[i+1].base
		var lastIndex uint64
		if i > 0 {
			lastIndex = j.segs[i-1].lastIndex
		}
		j.mu.RUnlock()

		readAt := func(p []byte, off int64) error {
			if err := s.readAt(p, off); err != nil {
				return err
			}
			if pace != nil {
				if err := pace(ctx, len(p)); err != nil {
					return err
				}
			}
			return ctx.Err()
		}
		expect := s.base
		var msgs []Message
		err = scanRecords(s.path, readAt, 0, size, nil, func(pos int64, rec []byte) error {
			h, m, err := checkFull(rec, expect, lastIndex, msgs)
			msgs = m
			if err != nil {
				return &CorruptionError{Segment: s.path, Offset: pos, Reason: err.Error()}
			}
			expect, lastIndex = h.lastOffset()+1, h.RaftIndex
			return nil
		})
		if err == nil && expect != next {
			err = &CorruptionError{Segment: s.path, Offset: size,
				Reason: fmt.Sprintf("records end at offset %d, the next segment starts at %d", expect, next)}
		}
		if errors.Is(err, errReplaced) {
			continue
		}
		var ce *CorruptionError
		if errors.As(err, &ce) {
			j.noteDamage(s, ce)
		}
		return err
	}
}

// ReadRecords calls fn, in order, with every record (the raw bytes of the
// record format in doc.go) holding offsets in [from, to), each checked
// first as Scrub checks it; the first and last may hold offsets outside
// the range. A damaged record ends it with its *CorruptionError (recorded
// as Damaged if its segment is sealed): nothing damaged is ever passed to
// fn. rec is valid until fn returns; fn's error ends the read and is
// returned. from below FirstOffset is ErrOffsetTruncated; it stops at
// NextOffset.
func (j *Journal) ReadRecords(ctx context.Context, from, to uint64, fn func(rec []byte) error) error {
	for from < to {
		j.mu.RLock()
		if j.closed {
			j.mu.RUnlock()
			return ErrClosed
		}
		if first := j.segs[0].base; from < first {
			j.mu.RUnlock()
			return fmt.Errorf("%w: offset %d, first %d", ErrOffsetTruncated, from, first)
		}
		if from >= j.tail().next {
			j.mu.RUnlock()
			return nil
		}
		i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base > from }) - 1
		s, size := j.segs[i], j.segs[i].size
		pos, expect := s.seek(from)
		j.mu.RUnlock()

		start := from
		var lastIndex uint64
		var msgs []Message
		readAt := func(p []byte, off int64) error {
			if err := s.readAt(p, off); err != nil {
				return err
			}
			return ctx.Err()
		}
		// Whatever the record after the range holds, it is not read.
		past := func() bool { return expect >= to }
		err := scanRecords(s.path, readAt, pos, size, past, func(at int64, rec []byte) error {
			h, m, err := checkFull(rec, expect, lastIndex, msgs)
			msgs = m
			if err != nil {
				return &CorruptionError{Segment: s.path, Offset: at, Reason: err.Error()}
			}
			expect, lastIndex = h.lastOffset()+1, h.RaftIndex
			if h.lastOffset() < from {
				return nil
			}
			if err := fn(rec); err != nil {
				return err
			}
			from = h.lastOffset() + 1
			return nil
		})
		switch {
		case err == nil && expect >= to:
			return nil
		case errors.Is(err, errReplaced):
			continue // from the first offset not yet passed to fn
		case err != nil:
			var ce *CorruptionError
			if errors.As(err, &ce) {
				j.noteDamage(s, ce)
			}
			return err
		}
		if from = max(from, expect); from == start {
			return nil // nothing more to read here
		}
	}
	return nil
}

// VerifyFile checks the first size bytes of a segment file outside any
// journal (a snapshot's copy, say) as Scrub checks a segment: every
// record whole, its CRC, its messages, offsets contiguous from the base
// offset in the file's name, Raft indexes increasing. Damage is a
// *CorruptionError naming path.
func VerifyFile(path string, size int64) error {
	var base uint64
	if n := filepath.Base(path); len(n) != 24 || filepath.Ext(n) != ".seg" {
		return fmt.Errorf("journal: %s is not named like a segment", path)
	} else if _, err := fmt.Sscanf(n, "%020d.seg", &base); err != nil {
		return fmt.Errorf("journal: %s is not named like a segment", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	readAt := func(p []byte, off int64) error {
		n, err := f.ReadAt(p, off)
		if err == io.EOF && n < len(p) {
			return &CorruptionError{Segment: path, Offset: off + int64(n), Reason: fmt.Sprintf("file ends before its %d bytes", size)}
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("journal: read %s: %w", path, err)
		}
		return nil
	}
	expect := base
	var lastIndex uint64
	var msgs []Message
	return scanRecords(path, readAt, 0, size, nil, func(pos int64, rec []byte) error {
		h, m, err := checkFull(rec, expect, lastIndex, msgs)
		msgs = m
		if err != nil {
			return &CorruptionError{Segment: path, Offset: pos, Reason: err.Error()}
		}
		expect, lastIndex = h.lastOffset()+1, h.RaftIndex
		return nil
	})
}

// Replacement is a new file for a sealed segment, being filled with
// records that come from elsewhere (another replica's journal) to repair
// it. BeginReplace starts it, Append checks and writes each record, Commit
// swaps it in, Abort drops it. It is not safe for concurrent use.
type Replacement struct {
	j          *Journal
	old        *segment
	oldSize    int64
	base, next uint64 // the segment holds offsets [base, next)
	lo, hi     uint64 // Raft indexes must lie in (lo, hi)
	tmp, tmpIx string
	f          File

	size      int64
	expect    uint64 // offset the next record must start at
	lastIndex uint64
	maxTS     int64
	index     []indexEntry
	lastBatch indexEntry
	msgs      []Message
	scratch   []byte
	err       error // sticky: a refused record refuses the replacement
	done      bool
}

// BeginReplace starts replacing the sealed segment whose first offset is
// base, damaged or not. The records given must hold exactly the offsets
// [base, next) of the segment, next being the first offset of the segment
// after it, and Raft indexes above the previous segment's last and below
// the next segment's first. One replacement per segment at a time.
func (j *Journal) BeginReplace(base uint64) (*Replacement, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i, err := j.sealed(base)
	if err != nil {
		return nil, err
	}
	if j.repairing[base] {
		return nil, fmt.Errorf("journal: segment %d is already being replaced", base)
	}
	s := j.segs[i]
	r := &Replacement{j: j, old: s, oldSize: s.size, base: base, next: j.segs[i+1].base, hi: math.MaxUint64,
		expect: base, maxTS: math.MinInt64}
	if i > 0 {
		r.lo = j.segs[i-1].lastIndex
	}
	r.lastIndex = r.lo
	if n := j.segs[i+1]; n.size > 0 {
		// The first record of the next segment bounds the Raft indexes.
		// If it is itself damaged there is no upper bound but the offsets.
		if _, h, err := n.readRecordLocked(0, n.size, nil); err == nil {
			r.hi = h.RaftIndex
		}
	}
	r.tmp = s.path + repairSuffix
	r.tmpIx = s.idxPath + repairSuffix
	f, err := j.fs.OpenFile(r.tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: create %s: %w", r.tmp, err)
	}
	r.f = f
	if j.repairing == nil {
		j.repairing = map[uint64]bool{}
	}
	j.repairing[base] = true
	return r, nil
}

// readRecordLocked reads the record at pos under the file's read lock.
func (s *segment) readRecordLocked(pos, limit int64, buf []byte) ([]byte, batchHeader, error) {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	if s.closed {
		return buf, batchHeader{}, fmt.Errorf("%w: segment %s was closed, deleted or replaced", ErrOffsetTruncated, s.path)
	}
	return s.readRecord(pos, limit, buf)
}

// Range is the offsets [first, next) the replacement must hold.
func (r *Replacement) Range() (first, next uint64) { return r.base, r.next }

// Next is the offset the next record must start at.
func (r *Replacement) Next() uint64 { return r.expect }

// Append checks rec, one whole record, and writes it to the replacement:
// it must pass its CRC and message checks, start at Next(), stay within
// the segment's offsets and its neighbours' Raft indexes, and equal the
// segment's own record at the same position wherever that one is intact.
// A refused record is ErrBadReplacement and refuses the whole replacement.
func (r *Replacement) Append(rec []byte) error {
	if r.err != nil {
		return r.err
	}
	if r.done {
		return fmt.Errorf("journal: replacement already ended")
	}
	h, msgs, err := checkFull(rec, r.expect, r.lastIndex, r.msgs)
	r.msgs = msgs
	switch {
	case err != nil:
	case h.lastOffset() >= r.next:
		err = fmt.Errorf("batch holds offsets up to %d, the segment ends before %d", h.lastOffset(), r.next)
	case h.RaftIndex >= r.hi:
		err = fmt.Errorf("raft index %d not below the next segment's first, %d", h.RaftIndex, r.hi)
	default:
		old, _, rerr := r.old.readRecordLocked(r.size, r.oldSize, r.scratch)
		r.scratch = old
		switch {
		case errors.Is(rerr, ErrOffsetTruncated):
			r.err = rerr
			return r.err
		case rerr == nil && !bytes.Equal(old, rec):
			// Records are deterministic (one per Raft entry): an intact
			// one that differs means the source diverged.
			err = fmt.Errorf("differs from the intact record at byte %d of the segment", r.size)
		}
	}
	if err != nil {
		r.err = fmt.Errorf("%w: %s at offset %d: %w", ErrBadReplacement, r.old.path, r.expect, err)
		return r.err
	}
	if _, err := r.f.WriteAt(rec, r.size); err != nil {
		r.err = fmt.Errorf("journal: write %s: %w", r.tmp, err)
		return r.err
	}
	e := indexEntry{Offset: h.BaseOffset, Pos: r.size, MaxTS: max(r.maxTS, h.Timestamp)}
	if n := len(r.index); n == 0 || e.Pos-r.index[n-1].Pos >= int64(r.j.opts.IndexIntervalBytes) {
		r.index = append(r.index, e)
	}
	r.size += int64(len(rec))
	r.expect, r.lastIndex, r.maxTS, r.lastBatch = h.lastOffset()+1, h.RaftIndex, e.MaxTS, e
	return nil
}

// Commit makes the replacement the segment: it checks that the records
// hold exactly the segment's offsets, syncs the new file and its index,
// renames them over the old ones, syncs the directory and swaps the new
// file in for later reads; reads in progress on the old file finish
// first. The segment is no longer Damaged. On error nothing changed and
// the replacement is dropped.
func (r *Replacement) Commit() error {
	if r.done {
		return fmt.Errorf("journal: replacement already ended")
	}
	err := r.commit()
	if err != nil {
		r.Abort()
	}
	return err
}

func (r *Replacement) commit() error {
	j := r.j
	if r.err != nil {
		return r.err
	}
	if r.expect != r.next || len(r.index) == 0 {
		r.err = fmt.Errorf("%w: %s: records end at offset %d, the segment at %d", ErrBadReplacement, r.old.path, r.expect, r.next)
		return r.err
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", r.tmp, err)
	}
	if n := len(r.index); r.index[n-1].Pos != r.lastBatch.Pos {
		// The last record is the anchor: the next Open reads only it.
		r.index = append(r.index, r.lastBatch)
	}
	buf := make([]byte, len(r.index)*indexEntrySize)
	for i, e := range r.index {
		putIndexEntry(buf[i*indexEntrySize:], e)
	}
	ix, err := j.fs.OpenFile(r.tmpIx, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("journal: create %s: %w", r.tmpIx, err)
	}
	_, err = ix.WriteAt(buf, 0)
	if err == nil {
		err = ix.Sync()
	}
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: write %s: %w", r.tmpIx, err)
	}

	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	j.mu.RLock()
	i := j.indexOf(r.old)
	closed := j.closed
	j.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case i < 0:
		return fmt.Errorf("%w: segment %s was deleted by retention", ErrOffsetTruncated, r.old.path)
	}
	// The segment first: its new index, written for it, follows. A crash
	// between the two leaves the old index beside the new segment, which
	// Open checks like any index.
	if err := j.fs.Rename(r.tmp, r.old.path); err != nil {
		return fmt.Errorf("journal: rename %s: %w", r.tmp, err)
	}
	if err := j.fs.Rename(r.tmpIx, r.old.idxPath); err != nil {
		j.log.Warn("could not install the index of a repaired segment", "index", r.old.idxPath, "error", err)
	}
	if err := j.fs.SyncDir(j.dir); err != nil {
		// The new file is in place but its name may not be durable yet: a
		// crash would bring back the damaged one, which is still refused.
		j.log.Warn("could not sync the directory of a repaired segment", "dir", j.dir, "error", err)
	}
	f, err := j.fs.OpenFile(r.old.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("journal: open repaired %s: %w", r.old.path, err)
	}
	ns := newSegment(j.dir, r.base)
	ns.f = f
	ns.size, ns.next, ns.lastIndex, ns.maxTS = r.size, r.next, r.lastIndex, r.maxTS
	ns.index, ns.lastBatch, ns.idxWritten = r.index, r.lastBatch, len(r.index)

	j.mu.Lock()
	if j.closed || j.indexOf(r.old) < 0 {
		j.mu.Unlock()
		f.Close()
		return ErrClosed
	}
	j.segs[j.indexOf(r.old)] = ns
	delete(j.repairing, r.base)
	j.mu.Unlock()
	r.f.Close()
	r.done = true

	r.old.fmu.Lock()
	r.old.replaced = true
	r.old.fmu.Unlock()
	r.old.close() // after the reads in progress on it
	j.log.Warn("repaired segment", "segment", ns.path, "first", r.base, "next", r.next, "bytes", r.size)
	return nil
}

// Abort drops the replacement; the segment stays as it was.
func (r *Replacement) Abort() {
	if r.done {
		return
	}
	r.done = true
	r.f.Close()
	r.j.fs.Remove(r.tmp)
	r.j.fs.Remove(r.tmpIx)
	r.j.mu.Lock()
	delete(r.j.repairing, r.base)
	r.j.mu.Unlock()
}
