package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// segment is one segment file and its sparse index.
type segment struct {
	base    uint64
	path    string
	idxPath string

	fmu      sync.RWMutex // held shared for I/O on f, exclusively to close it
	f        File
	closed   bool
	deleted  bool // closed because retention deleted it
	replaced bool // closed because a repair replaced its file (see repair.go)

	// Guarded by Journal.mu (written only while loading, or by the holder
	// of the write lock).
	size       int64
	next       uint64 // offset after the last message
	lastIndex  uint64 // Raft index of the last batch (inherited when empty)
	maxTS      int64  // running maximum of batch timestamps
	index      []indexEntry
	lastBatch  indexEntry // the last batch, valid when size > 0
	idxF       File       // the index file, open for writing on the tail only
	idxWritten int        // entries of index already in the index file
	// damage is the first damaged record found in the segment, once it is
	// sealed; nil while none is known. Only a replacement clears it.
	damage *CorruptionError
}

func newSegment(dir string, base uint64) *segment {
	p := filepath.Join(dir, segmentName(base))
	return &segment{base: base, path: p, idxPath: p[:len(p)-len(".seg")] + ".idx"}
}

// openSegment loads a segment found on disk. A sealed segment is trusted
// up to its last index entry and checked from there to its end: damage
// there is recorded (the segment opens damaged, ending at nextBase, the
// base of the segment after it). The tail is checked the same way, but
// damage that no valid record follows is a torn write: it is truncated and
// logged; other damage in the tail is a *CorruptionError.
func (j *Journal) openSegment(base uint64, tail bool, prev *segment, nextBase uint64) (*segment, error) {
	s := newSegment(j.dir, base)
	flag := os.O_RDONLY
	if tail {
		flag = os.O_RDWR
	}
	f, err := j.fs.OpenFile(s.path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: open segment: %w", err)
	}
	s.f = f
	size, err := f.Size()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("journal: size of %s: %w", s.path, err)
	}
	entries, err := j.readIndexFile(s, tail)
	if err != nil {
		s.close()
		return nil, err
	}
	if err := j.recoverSegment(s, size, entries, tail, prev, nextBase); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// readIndexFile reads the segment's index file, opening it for writing if
// the segment is the tail. A missing index is rebuilt from the segment.
func (j *Journal) readIndexFile(s *segment, tail bool) ([]indexEntry, error) {
	flag := os.O_RDONLY
	if tail {
		flag = os.O_RDWR | os.O_CREATE
	}
	f, err := j.fs.OpenFile(s.idxPath, flag, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: open index: %w", err)
	}
	size, err := f.Size()
	var data []byte
	if err == nil {
		data = make([]byte, size)
		_, err = f.ReadAt(data, 0)
	}
	if err != nil && err != io.EOF {
		f.Close()
		return nil, fmt.Errorf("journal: read index %s: %w", s.idxPath, err)
	}
	if tail {
		s.idxF = f
	} else {
		f.Close()
	}
	return parseIndex(data), nil
}

func (j *Journal) recoverSegment(s *segment, size int64, entries []indexEntry, tail bool, prev *segment, nextBase uint64) error {
	s.next, s.maxTS = s.base, math.MinInt64
	if prev != nil {
		s.lastIndex = prev.lastIndex
	}
	// The anchor is the last index entry whose record is intact: the
	// segment is trusted up to the end of that record.
	if len(entries) > 0 && (entries[0].Pos != 0 || entries[0].Offset != s.base) {
		entries = nil
	}
	var pos int64
	var scratch []byte
	for k := len(entries) - 1; k >= 0; k-- {
		e := entries[k]
		rec, h, err := s.readRecord(e.Pos, size, scratch)
		scratch = rec
		if err != nil || h.BaseOffset != e.Offset {
			continue
		}
		entries = entries[:k+1]
		pos = e.Pos + int64(h.Length)
		s.next, s.lastIndex, s.maxTS = h.lastOffset()+1, h.RaftIndex, e.MaxTS
		s.lastBatch = e
		break
	}
	if pos == 0 {
		entries = nil
	}
	s.index = entries
	onDisk := len(entries)
	for pos < size {
		rec, h, err := s.readRecord(pos, size, scratch)
		scratch = rec
		var ce *CorruptionError
		switch {
		case err == nil && h.BaseOffset != s.next:
			ce = &CorruptionError{Segment: s.path, Offset: pos,
				Reason: fmt.Sprintf("batch starts at offset %d, expected %d", h.BaseOffset, s.next)}
		case err == nil && h.RaftIndex <= s.lastIndex:
			ce = &CorruptionError{Segment: s.path, Offset: pos,
				Reason: fmt.Sprintf("raft index %d not above %d", h.RaftIndex, s.lastIndex)}
		case err != nil && !tail:
			ce = &CorruptionError{Segment: s.path, Offset: pos, Reason: err.Error()}
		}
		if ce != nil && tail {
			return ce
		}
		if ce != nil {
			return j.openDamaged(s, size, onDisk, nextBase, ce)
		}
		if err != nil {
			if q, ok := s.validRecordAfter(pos, size); ok {
				return &CorruptionError{Segment: s.path, Offset: pos,
					Reason: fmt.Sprintf("%v, and a valid record follows at byte %d", err, q)}
			}
			if err := j.truncateTorn(s, pos, size, err); err != nil {
				return err
			}
			size = pos
			break
		}
		e := indexEntry{Offset: h.BaseOffset, Pos: pos, MaxTS: max(s.maxTS, h.Timestamp)}
		if n := len(s.index); n == 0 || pos-s.index[n-1].Pos >= int64(j.opts.IndexIntervalBytes) {
			s.index = append(s.index, e)
		}
		s.next, s.lastIndex, s.maxTS, s.lastBatch = h.lastOffset()+1, h.RaftIndex, e.MaxTS, e
		pos += int64(h.Length)
	}
	s.size = size
	s.idxWritten = onDisk
	if tail {
		// Drop stale entries past the anchor, so they are never read back.
		if err := s.idxF.Truncate(int64(onDisk) * indexEntrySize); err != nil {
			return fmt.Errorf("journal: truncate index %s: %w", s.idxPath, err)
		}
		return nil
	}
	if onDisk < len(s.index) {
		// A sealed segment's index was incomplete: write it whole, so the
		// next Open need not scan. The index is only a cache, so a failure
		// here is logged, not fatal.
		if err := j.rewriteIndex(s); err != nil {
			j.log.Warn("could not rewrite segment index", "index", s.idxPath, "error", err)
		}
	}
	return nil
}

// openDamaged finishes loading a sealed segment in which ce was found at
// or after the anchor. What follows the damage is unknown: the segment is
// taken to end at nextBase, where the next one starts, its largest
// timestamp is unknown (math.MaxInt64, so retention by age never deletes
// it on a guess), and its last Raft index is that of its last intact
// record, a lower bound. Reads that reach the damage get ce again.
func (j *Journal) openDamaged(s *segment, size int64, onDisk int, nextBase uint64, ce *CorruptionError) error {
	if s.next > nextBase {
		return &CorruptionError{Segment: s.path, Offset: ce.Offset,
			Reason: fmt.Sprintf("%s; its intact records reach offset %d, past the next segment's first %d", ce.Reason, s.next, nextBase)}
	}
	s.size, s.next, s.maxTS, s.damage, s.idxWritten = size, nextBase, math.MaxInt64, ce, onDisk
	j.log.Error("damaged record in a sealed segment: opened, reads of it refused until it is repaired",
		"segment", s.path, "at", ce.Offset, "first", s.base, "next", s.next, "reason", ce.Reason)
	j.reportDamage(s, ce)
	return nil
}

// truncateTorn cuts a torn tail at pos.
func (j *Journal) truncateTorn(s *segment, pos, size int64, cause error) error {
	j.log.Warn("truncating torn tail", "segment", s.path, "at", pos, "dropped_bytes", size-pos, "reason", cause)
	if err := s.f.Truncate(pos); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", s.path, err)
	}
	return nil
}

func (j *Journal) rewriteIndex(s *segment) error {
	f, err := j.fs.OpenFile(s.idxPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, len(s.index)*indexEntrySize)
	for i, e := range s.index {
		putIndexEntry(buf[i*indexEntrySize:], e)
	}
	_, err = f.WriteAt(buf, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		s.idxWritten = len(s.index)
	}
	return err
}

// readRecord reads and checks the whole record at pos, which must end by
// limit. It reuses buf when it is large enough.
func (s *segment) readRecord(pos, limit int64, buf []byte) ([]byte, batchHeader, error) {
	var h batchHeader
	if limit-pos < batchHeaderSize {
		return buf, h, errShort
	}
	if cap(buf) < batchHeaderSize {
		buf = make([]byte, 64<<10)
	}
	buf = buf[:batchHeaderSize]
	if _, err := s.f.ReadAt(buf, pos); err != nil {
		return buf, h, fmt.Errorf("read: %w", err)
	}
	h, err := parseHeader(buf, maxRecordBytes)
	if err != nil {
		return buf, h, err
	}
	if int64(h.Length) > limit-pos {
		return buf, h, errShort
	}
	if cap(buf) < int(h.Length) {
		nb := make([]byte, h.Length)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:h.Length]
	if _, err := s.f.ReadAt(buf[batchHeaderSize:], pos+batchHeaderSize); err != nil {
		return buf, h, fmt.Errorf("read: %w", err)
	}
	h, err = checkRecord(buf, maxRecordBytes)
	return buf, h, err
}

// validRecordAfter looks for an intact record anywhere after pos. Finding
// one means the damage at pos is not a torn tail.
func (s *segment) validRecordAfter(pos, size int64) (int64, bool) {
	if size-pos <= batchHeaderSize {
		return 0, false
	}
	data := make([]byte, size-pos-1)
	if _, err := s.f.ReadAt(data, pos+1); err != nil && err != io.EOF {
		return 0, false
	}
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], batchMagic)
	for i := 0; ; {
		k := bytes.Index(data[i:], magic[:])
		if k < 0 {
			return 0, false
		}
		if _, err := checkRecord(data[i+k:], maxRecordBytes); err == nil {
			return pos + 1 + int64(i+k), true
		}
		i += k + 1
	}
}

// seek returns the position and base offset of the last indexed record at
// or before offset. Call with Journal.mu held.
func (s *segment) seek(offset uint64) (int64, uint64) {
	k := sort.Search(len(s.index), func(k int) bool { return s.index[k].Offset > offset })
	if k == 0 {
		return 0, s.base
	}
	return s.index[k-1].Pos, s.index[k-1].Offset
}

// readChunk is how much Read asks of the file at a time.
const readChunk = 256 << 10

// read decodes messages from the records between pos and limit; the
// record at pos starts at offset expect. Every record read is checked,
// also those before from, and each must start where the one before ended:
// a damaged length can never make the read skip a record unnoticed.
func (s *segment) read(pos, limit int64, expect, from uint64, maxMsgs, maxBytes int) ([]Message, error) {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	if s.closed {
		if s.replaced {
			return nil, errReplaced
		}
		if s.deleted {
			return nil, fmt.Errorf("%w: segment %s was deleted by retention", ErrOffsetTruncated, s.path)
		}
		return nil, ErrClosed
	}
	chunk := int64(readChunk)
	if maxBytes > 0 && int64(maxBytes)+batchHeaderSize < chunk {
		chunk = max(int64(maxBytes)+batchHeaderSize, 4<<10)
	}
	l := readLimits{from: from, max: maxMsgs, maxBytes: maxBytes}
	var out []Message
	for pos < limit {
		buf := make([]byte, min(chunk, limit-pos))
		if _, err := s.f.ReadAt(buf, pos); err != nil {
			return out, fmt.Errorf("journal: read %s: %w", s.path, err)
		}
		p := 0
		for len(buf)-p >= batchHeaderSize {
			h, err := parseHeader(buf[p:], maxRecordBytes)
			if err != nil {
				return out, &CorruptionError{Segment: s.path, Offset: pos + int64(p), Reason: err.Error()}
			}
			if pos+int64(p)+int64(h.Length) > limit {
				return out, &CorruptionError{Segment: s.path, Offset: pos + int64(p),
					Reason: fmt.Sprintf("record of %d bytes runs past the end at %d", h.Length, limit)}
			}
			if p+int(h.Length) > len(buf) {
				chunk = max(chunk, int64(h.Length))
				break
			}
			rec := buf[p : p+int(h.Length)]
			p += int(h.Length)
			if _, err := checkRecord(rec, maxRecordBytes); err != nil {
				return out, &CorruptionError{Segment: s.path, Offset: pos + int64(p) - int64(len(rec)), Reason: err.Error()}
			}
			if h.BaseOffset != expect {
				return out, &CorruptionError{Segment: s.path, Offset: pos + int64(p) - int64(len(rec)),
					Reason: fmt.Sprintf("batch starts at offset %d, expected %d", h.BaseOffset, expect)}
			}
			expect = h.lastOffset() + 1
			if h.lastOffset() < from {
				continue
			}
			if out == nil {
				out = make([]Message, 0, min(maxMsgs, int(h.Count)*2, 4096))
			}
			var done bool
			if out, done, err = decodeMessages(out, &h, rec, &l); err != nil {
				return out, &CorruptionError{Segment: s.path, Offset: pos + int64(p) - int64(len(rec)), Reason: err.Error()}
			}
			if done {
				return out, nil
			}
		}
		pos += int64(p)
	}
	return out, nil
}

// verify checks every record up to size and returns the last Raft index.
func (s *segment) verify(size int64, lastIndex uint64) (uint64, error) {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	if s.closed {
		if s.deleted || s.replaced {
			return lastIndex, nil
		}
		return lastIndex, ErrClosed
	}
	next := s.base
	var buf []byte
	var msgs []Message
	for pos := int64(0); pos < size; {
		rec, h, err := s.readRecord(pos, size, buf)
		buf = rec
		if err == nil && h.BaseOffset != next {
			err = fmt.Errorf("batch starts at offset %d, expected %d", h.BaseOffset, next)
		}
		if err == nil && h.RaftIndex <= lastIndex {
			err = fmt.Errorf("raft index %d not above %d", h.RaftIndex, lastIndex)
		}
		if err == nil {
			l := readLimits{max: math.MaxInt}
			msgs, _, err = decodeMessages(msgs[:0], &h, rec, &l)
		}
		if err != nil {
			return lastIndex, &CorruptionError{Segment: s.path, Offset: pos, Reason: err.Error()}
		}
		next, lastIndex = h.lastOffset()+1, h.RaftIndex
		pos += int64(h.Length)
	}
	return lastIndex, nil
}

// writeIndex appends index entries up to n to the tail's index file.
// Call with Journal.mu held for writing.
func (s *segment) writeIndex(n int) error {
	if n <= s.idxWritten {
		return nil
	}
	buf := make([]byte, (n-s.idxWritten)*indexEntrySize)
	for i, e := range s.index[s.idxWritten:n] {
		putIndexEntry(buf[i*indexEntrySize:], e)
	}
	if _, err := s.idxF.WriteAt(buf, int64(s.idxWritten)*indexEntrySize); err != nil {
		return fmt.Errorf("write %s: %w", s.idxPath, err)
	}
	s.idxWritten = n
	return nil
}

// syncPoint makes the last batch an index entry, so that recovery knows
// everything up to it reached the disk once the coming sync succeeds, and
// returns the number of entries the sync covers. Call with Journal.mu held
// for writing, on a segment that is not empty.
func (s *segment) syncPoint() int {
	if n := len(s.index); s.index[n-1].Pos != s.lastBatch.Pos {
		s.index = append(s.index, s.lastBatch)
	}
	return len(s.index)
}

// sync makes the segment's data durable.
func (s *segment) sync() error {
	s.fmu.RLock()
	defer s.fmu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}

// close closes the segment's files once reads in progress are done.
func (s *segment) close() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.f != nil {
		err = s.f.Close()
	}
	if s.idxF != nil {
		if cerr := s.idxF.Close(); err == nil {
			err = cerr
		}
		s.idxF = nil
	}
	return err
}
