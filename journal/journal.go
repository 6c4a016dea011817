package journal

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Header is one application header of a message.
type Header struct {
	Key   string
	Value []byte
}

// Message is one message of a batch. Messages returned by Read alias a
// buffer owned by the caller from then on; the journal never reuses it.
type Message struct {
	Offset    uint64 // assigned by the journal; ignored by Append
	Timestamp int64  // Unix nanoseconds; 0 in Append means the batch's timestamp
	Key       []byte
	ID        string // optional producer message id (for de-duplication)
	Headers   []Header
	Payload   []byte
}

// Batch is what Append writes as one record.
type Batch struct {
	// RaftIndex is the index of the Raft log entry the batch came from. It
	// must be above the index of every batch appended before.
	RaftIndex uint64
	// Timestamp (Unix nanoseconds) is stamped by the leader and given to
	// every message that has none. Retention by age and seeking by time use
	// the largest message timestamp of each batch.
	Timestamp int64
	Messages  []Message
}

// Sentinel errors. Test with errors.Is.
var (
	ErrClosed          = errors.New("journal: closed")
	ErrEmptyBatch      = errors.New("journal: empty batch")
	ErrMessageTooLarge = errors.New("journal: message too large")
	ErrBatchTooLarge   = errors.New("journal: batch too large")
	ErrStaleIndex      = errors.New("journal: raft index not above the last appended")
	ErrOffsetTruncated = errors.New("journal: offset below the first retained offset")
	ErrCorrupt         = errors.New("journal: corrupt")
	// ErrFailed wraps the I/O error after which the journal refuses every
	// append and sync until it is closed and opened again, which recovers
	// its tail from what is on disk.
	ErrFailed = errors.New("journal: failed after an I/O error, reopen it")
)

// errShort is the internal signal that a record runs past the end of the
// data available.
var errShort = errors.New("short record")

// CorruptionError reports damaged data that is not a torn tail: a record
// that fails its checks in a sealed segment, or before valid records in the
// tail segment. errors.Is(err, ErrCorrupt) holds for it.
type CorruptionError struct {
	Segment string // path of the segment file
	Offset  int64  // byte position of the damaged record in the segment
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("journal: segment %s corrupt at byte %d: %s", e.Segment, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// Defaults for Options.
const (
	DefaultSegmentBytes       = 64 << 20
	DefaultMaxMessageBytes    = 1 << 20
	DefaultMaxBatchBytes      = 8 << 20
	DefaultIndexIntervalBytes = 4 << 10

	// maxRecordBytes bounds the length field a reader accepts, whatever the
	// options a journal was written with, so a corrupt length never makes
	// the reader allocate more.
	maxRecordBytes = 1 << 30
)

// Options configure a journal. The zero value gives the defaults.
type Options struct {
	// SegmentBytes is the size at which the tail segment is sealed and a
	// new one started (default 64 MiB). A record never spans segments.
	SegmentBytes int64
	// MaxMessageBytes bounds key + id + headers + payload of one message
	// (default 1 MiB).
	MaxMessageBytes int
	// MaxBatchBytes bounds one encoded batch record (default 8 MiB).
	MaxBatchBytes int
	// IndexIntervalBytes is the spacing of the sparse offset index
	// (default 4 KiB).
	IndexIntervalBytes int
	// FS is the file system (default the operating system's).
	FS FS
	// Logger receives recovery, retention and repair events (default
	// none).
	Logger hclog.Logger
	// OnDamage, if set, is called once for each sealed segment found
	// damaged (by Open, Read, ReadRecords, Scrub or Verify), from the
	// goroutine that found it and with no lock held. It must not block or
	// call the journal; queue the segment for repair (see repair.go).
	OnDamage func(Damage)
}

func (o Options) withDefaults() (Options, error) {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	switch {
	case o.SegmentBytes < 0:
		return o, fmt.Errorf("journal: SegmentBytes %d is negative", o.SegmentBytes)
	case o.MaxMessageBytes < 0:
		return o, fmt.Errorf("journal: MaxMessageBytes %d is negative", o.MaxMessageBytes)
	case o.MaxBatchBytes < batchHeaderSize || o.MaxBatchBytes > maxRecordBytes:
		return o, fmt.Errorf("journal: MaxBatchBytes %d out of range [%d, %d]", o.MaxBatchBytes, batchHeaderSize, maxRecordBytes)
	case o.IndexIntervalBytes < 0:
		return o, fmt.Errorf("journal: IndexIntervalBytes %d is negative", o.IndexIntervalBytes)
	}
	return o, nil
}

// Journal is one partition's log: a directory of segment files named by
// the offset of their first message. All methods are safe for concurrent
// use; reads run in parallel with appends.
type Journal struct {
	dir  string
	opts Options
	fs   FS
	log  hclog.Logger

	syncMu sync.Mutex // serialises Sync
	// fileMu serialises the removal of segment files by retention with
	// their replacement by a repair. Take it before mu.
	fileMu sync.Mutex

	mu     sync.RWMutex
	segs   []*segment // ascending base offsets; the last is the tail
	closed bool
	err    error // sticky I/O error, wrapped in ErrFailed
	buf    []byte
	// repairing holds the base offsets of segments with a Replacement
	// in progress.
	repairing map[uint64]bool
}

// Open opens the journal in dir, creating dir if needed. It recovers the
// tail segment: a torn last record is truncated and logged; damage before
// valid data is a *CorruptionError. Sealed segments are not scanned beyond
// their last index entry, so Open takes milliseconds whatever the size;
// damage found there does not stop Open: the segment opens damaged (see
// Damaged), and reads that reach the damage fail with a *CorruptionError.
func Open(dir string, opts Options) (*Journal, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, opts: o, fs: o.FS, log: o.Logger}
	if err := j.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: create %s: %w", dir, err)
	}
	if err := j.load(); err != nil {
		j.closeFiles()
		return nil, err
	}
	return j, nil
}

func segmentName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

func (j *Journal) load() error {
	names, err := j.fs.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("journal: list %s: %w", j.dir, err)
	}
	var bases []uint64
	segs := map[string]bool{}
	for _, n := range names {
		if strings.HasSuffix(n, repairSuffix) {
			// Left by a repair that never committed.
			if err := j.fs.Remove(filepath.Join(j.dir, n)); err != nil {
				return fmt.Errorf("journal: remove unfinished repair: %w", err)
			}
			continue
		}
		var base uint64
		if len(n) == 24 && filepath.Ext(n) == ".seg" {
			if _, err := fmt.Sscanf(n, "%020d.seg", &base); err == nil && segmentName(base) == n {
				bases = append(bases, base)
				segs[n[:20]] = true
			}
		}
	}
	// An index whose segment is gone was left by a retention interrupted
	// between its two removals.
	for _, n := range names {
		if len(n) == 24 && filepath.Ext(n) == ".idx" && !segs[n[:20]] {
			if err := j.fs.Remove(filepath.Join(j.dir, n)); err != nil {
				return fmt.Errorf("journal: remove orphan index: %w", err)
			}
		}
	}
	sort.Slice(bases, func(a, b int) bool { return bases[a] < bases[b] })
	if len(bases) == 0 {
		s, err := j.createSegment(0)
		if err != nil {
			return err
		}
		j.segs = []*segment{s}
		return nil
	}
	var prev *segment
	for i, base := range bases {
		tail := i == len(bases)-1
		var nextBase uint64
		if !tail {
			nextBase = bases[i+1]
		}
		s, err := j.openSegment(base, tail, prev, nextBase)
		if err != nil {
			return err
		}
		j.segs = append(j.segs, s)
		if prev != nil && prev.next != s.base {
			return &CorruptionError{Segment: s.path, Offset: 0,
				Reason: fmt.Sprintf("segment starts at offset %d but the one before ends at %d", s.base, prev.next)}
		}
		prev = s
	}
	t := j.segs[len(j.segs)-1]
	if t.size == 0 && len(j.segs) > 1 {
		// A segment created by a roll whose first batch never reached the
		// disk. Drop it, so the tail holds the last Raft index.
		if err := j.removeSegment(t); err != nil {
			return err
		}
		j.segs = j.segs[:len(j.segs)-1]
		if err := j.fs.SyncDir(j.dir); err != nil {
			return fmt.Errorf("journal: sync %s: %w", j.dir, err)
		}
		t = j.segs[len(j.segs)-1]
		if t.damage != nil {
			// It would become the tail, whose last Raft index must be
			// known; it cannot be repaired as the tail either.
			return t.damage
		}
		if err := j.reopenForAppend(t); err != nil {
			return err
		}
	}
	return nil
}

// createSegment creates an empty tail segment whose first offset is base.
func (j *Journal) createSegment(base uint64) (*segment, error) {
	s := newSegment(j.dir, base)
	f, err := j.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: create segment: %w", err)
	}
	s.f = f
	idx, err := j.fs.OpenFile(s.idxPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: create index: %w", err)
	}
	s.idxF = idx
	s.next = base
	s.maxTS = math.MinInt64
	if err := j.fs.SyncDir(j.dir); err != nil {
		s.close()
		return nil, fmt.Errorf("journal: sync %s: %w", j.dir, err)
	}
	return s, nil
}

// reopenForAppend makes a segment loaded as sealed the writable tail.
func (j *Journal) reopenForAppend(s *segment) error {
	f, err := j.fs.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: open segment: %w", err)
	}
	idx, err := j.fs.OpenFile(s.idxPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		f.Close()
		return fmt.Errorf("journal: open index: %w", err)
	}
	s.f.Close()
	s.f, s.idxF = f, idx
	return nil
}

func (j *Journal) removeSegment(s *segment) error {
	s.fmu.Lock()
	s.deleted = true
	s.fmu.Unlock()
	s.close()
	if err := j.fs.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: remove segment: %w", err)
	}
	if err := j.fs.Remove(s.idxPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: remove index: %w", err)
	}
	return nil
}

func (j *Journal) tail() *segment { return j.segs[len(j.segs)-1] }

// usable reports why the journal cannot take writes. Call with mu held.
func (j *Journal) usable() error {
	if j.closed {
		return ErrClosed
	}
	return j.err
}

// fail makes err sticky. Call with mu held for writing.
func (j *Journal) fail(err error) error {
	if j.err == nil {
		j.err = fmt.Errorf("%w: %w", ErrFailed, err)
		j.log.Error("journal failed; appends refused until reopened", "dir", j.dir, "error", err)
	}
	return j.err
}

// Append writes b as one record and returns the offset of its first
// message. It does not sync: call Sync for durability. A batch whose Raft
// index is not above the last one is refused with ErrStaleIndex, which
// makes replaying a Raft log idempotent.
func (j *Journal) Append(b Batch) (uint64, error) {
	if len(b.Messages) == 0 {
		return 0, ErrEmptyBatch
	}
	total := 0
	for i := range b.Messages {
		n := MessageSize(&b.Messages[i])
		if n > j.opts.MaxMessageBytes {
			return 0, fmt.Errorf("%w: message %d is %d bytes, the limit is %d", ErrMessageTooLarge, i, n, j.opts.MaxMessageBytes)
		}
		total += n
	}
	if total > j.opts.MaxBatchBytes {
		return 0, fmt.Errorf("%w: %d bytes of messages, the limit is %d", ErrBatchTooLarge, total, j.opts.MaxBatchBytes)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return 0, err
	}
	t := j.tail()
	if last := j.lastIndex(); b.RaftIndex <= last {
		return 0, fmt.Errorf("%w: index %d, last %d", ErrStaleIndex, b.RaftIndex, last)
	}
	base := t.next
	j.buf = encodeBatch(j.buf[:0], base, b.RaftIndex, b.Timestamp, b.Messages)
	rec := j.buf
	if len(rec) > j.opts.MaxBatchBytes {
		return 0, fmt.Errorf("%w: record of %d bytes, the limit is %d", ErrBatchTooLarge, len(rec), j.opts.MaxBatchBytes)
	}
	if t.size > 0 && t.size+int64(len(rec)) > j.opts.SegmentBytes {
		if err := j.roll(); err != nil {
			return 0, j.fail(err)
		}
		t = j.tail()
	}
	if _, err := t.f.WriteAt(rec, t.size); err != nil {
		return 0, j.fail(fmt.Errorf("write %s: %w", t.path, err))
	}
	e := indexEntry{Offset: base, Pos: t.size, MaxTS: max(t.maxTS, recordTimestamp(rec))}
	if n := len(t.index); n == 0 || e.Pos-t.index[n-1].Pos >= int64(j.opts.IndexIntervalBytes) {
		t.index = append(t.index, e)
	}
	t.size += int64(len(rec))
	t.next = base + uint64(len(b.Messages))
	t.lastIndex = b.RaftIndex
	t.maxTS = e.MaxTS
	t.lastBatch = e
	return base, nil
}

// lastIndex is the Raft index of the last batch. The tail holds a batch
// unless the journal is new, so the tail alone knows it.
func (j *Journal) lastIndex() uint64 { return j.tail().lastIndex }

// roll seals the tail (sync data, write and sync its whole index) and
// starts a new segment at the next offset. Call with mu held.
func (j *Journal) roll() error {
	t := j.tail()
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	if err := t.writeIndex(len(t.index)); err != nil {
		return err
	}
	if err := t.idxF.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.idxPath, err)
	}
	t.idxF.Close()
	t.idxF = nil
	s, err := j.createSegment(t.next)
	if err != nil {
		return err
	}
	s.lastIndex = t.lastIndex
	j.segs = append(j.segs, s)
	return nil
}

// Sync makes every appended batch durable. Appends and reads go on while
// it waits for the disk.
func (j *Journal) Sync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	t := j.tail()
	if t.size == 0 {
		j.mu.Unlock()
		return nil
	}
	n := t.syncPoint()
	j.mu.Unlock()

	err := t.sync()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		return j.fail(err)
	}
	if t.idxF == nil { // sealed by a roll meanwhile, which wrote the index
		return nil
	}
	if err := t.writeIndex(n); err != nil {
		return j.fail(err)
	}
	return nil
}

// Close syncs the tail and closes every file. Reads in progress finish
// first; later calls of any method get ErrClosed. Close of a closed
// journal does nothing.
func (j *Journal) Close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	var err error
	if t := j.tail(); j.err == nil && t.size > 0 {
		n := t.syncPoint()
		if err = t.f.Sync(); err == nil {
			err = t.writeIndex(n)
		}
	}
	j.mu.Unlock()
	if cerr := j.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (j *Journal) closeFiles() error {
	var err error
	for _, s := range j.segs {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// FirstOffset is the offset of the first retained message (equal to
// NextOffset when the journal is empty).
func (j *Journal) FirstOffset() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.segs[0].base
}

// NextOffset is the offset the next appended message will get; the last
// message's offset is NextOffset()-1 when the journal is not empty.
func (j *Journal) NextOffset() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.tail().next
}

// LastRaftIndex is the Raft index of the last appended batch, 0 if none.
func (j *Journal) LastRaftIndex() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.lastIndex()
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	Path          string
	BaseOffset    uint64 // offset of the first message
	NextOffset    uint64 // offset after the last message
	Size          int64  // bytes
	MaxTimestamp  int64  // largest batch timestamp; math.MinInt64 if empty
	LastRaftIndex uint64
	Sealed        bool
	// Damage is the damaged record found in a sealed segment, nil if none
	// is known (see Damaged).
	Damage *CorruptionError
}

// Segments lists the segments, oldest first.
func (j *Journal) Segments() []SegmentInfo {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := make([]SegmentInfo, len(j.segs))
	for i, s := range j.segs {
		out[i] = SegmentInfo{Path: s.path, BaseOffset: s.base, NextOffset: s.next, Size: s.size,
			MaxTimestamp: s.maxTS, LastRaftIndex: s.lastIndex, Sealed: i < len(j.segs)-1, Damage: s.damage}
	}
	return out
}

// Read returns up to maxMsgs messages starting at offset from, stopping
// before the one that would take the total of message sizes past maxBytes
// (0 means no byte limit). It returns at least one message when any exists
// at from, whatever its size, and never reads past the end of the segment
// holding from, so it may return fewer messages than exist. An offset at or
// past NextOffset returns none; one below FirstOffset, or in a segment
// deleted while the read was in progress, returns ErrOffsetTruncated. A
// read that meets a damaged record returns a *CorruptionError, with the
// intact messages before it; the damaged record's are never returned.
func (j *Journal) Read(from uint64, maxMsgs, maxBytes int) ([]Message, error) {
	if maxMsgs <= 0 {
		return nil, nil
	}
	for {
		msgs, err := j.read(from, maxMsgs, maxBytes)
		if errors.Is(err, errReplaced) {
			continue // a repair swapped the segment in the meantime
		}
		return msgs, err
	}
}

func (j *Journal) read(from uint64, maxMsgs, maxBytes int) ([]Message, error) {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return nil, ErrClosed
	}
	if first := j.segs[0].base; from < first {
		j.mu.RUnlock()
		return nil, fmt.Errorf("%w: offset %d, first %d", ErrOffsetTruncated, from, first)
	}
	if from >= j.tail().next {
		j.mu.RUnlock()
		return nil, nil
	}
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base > from }) - 1
	s := j.segs[i]
	limit := s.size
	pos, expect := s.seek(from)
	j.mu.RUnlock()
	msgs, err := s.read(pos, limit, expect, from, maxMsgs, maxBytes)
	var ce *CorruptionError
	if errors.As(err, &ce) {
		j.noteDamage(s, ce)
	}
	return msgs, err
}

// OffsetForTime returns the offset of the first message stamped at or
// after ts (Unix nanoseconds), or NextOffset if there is none. With
// timestamps that go back in time it starts from the first batch whose
// running maximum timestamp reaches ts.
func (j *Journal) OffsetForTime(ts int64) (uint64, error) {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return 0, ErrClosed
	}
	from := j.tail().next
	for _, s := range j.segs {
		if s.maxTS >= ts {
			k := sort.Search(len(s.index), func(k int) bool { return s.index[k].MaxTS >= ts })
			from = s.base
			if k > 0 {
				from = s.index[k-1].Offset
			}
			break
		}
	}
	end := j.tail().next
	j.mu.RUnlock()
	for from < end {
		msgs, err := j.Read(from, 1024, 0)
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.Timestamp >= ts {
				return m.Offset, nil
			}
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	return end, nil
}

// AgeCutoff returns the offset to give DeleteBefore to delete every sealed
// segment whose batches were all stamped before cutoff (Unix nanoseconds).
func (j *Journal) AgeCutoff(cutoff int64) uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	for _, s := range j.segs[:len(j.segs)-1] {
		if s.maxTS >= cutoff {
			return s.base
		}
	}
	return j.tail().base
}

// SizeCutoff returns the offset to give DeleteBefore to delete the oldest
// sealed segments until the journal holds at most maxBytes, or only its
// tail segment.
func (j *Journal) SizeCutoff(maxBytes int64) uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	for _, s := range j.segs[:len(j.segs)-1] {
		if total <= maxBytes {
			return s.base
		}
		total -= s.size
	}
	return j.tail().base
}

// DeleteBefore deletes every sealed segment all of whose messages are
// below offset, oldest first, and returns how many it deleted. The tail
// segment is never deleted. Reads of a deleted segment in progress finish
// first; later ones get ErrOffsetTruncated.
func (j *Journal) DeleteBefore(offset uint64) (int, error) {
	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	n := 0
	for n < len(j.segs)-1 && j.segs[n].next <= offset {
		n++
	}
	victims := append([]*segment(nil), j.segs[:n]...)
	j.segs = append(j.segs[:0:0], j.segs[n:]...)
	j.mu.Unlock()
	for i, s := range victims {
		if err := j.removeSegment(s); err != nil {
			return i, err
		}
		j.log.Info("retention deleted segment", "segment", s.path, "first", s.base, "next", s.next, "bytes", s.size)
	}
	if n > 0 {
		if err := j.fs.SyncDir(j.dir); err != nil {
			return n, fmt.Errorf("journal: sync %s: %w", j.dir, err)
		}
	}
	return n, nil
}

// Verify reads every record of every segment, checking checksums, message
// encoding, offsets and Raft indexes, and returns the first damage found
// as a *CorruptionError.
func (j *Journal) Verify() error {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return ErrClosed
	}
	type span struct {
		s    *segment
		size int64
	}
	spans := make([]span, len(j.segs))
	for i, s := range j.segs {
		spans[i] = span{s, s.size}
	}
	j.mu.RUnlock()
	var lastIndex uint64
	for _, sp := range spans {
		var err error
		if lastIndex, err = sp.s.verify(sp.size, lastIndex); err != nil {
			var ce *CorruptionError
			if errors.As(err, &ce) {
				j.noteDamage(sp.s, ce)
			}
			return err
		}
	}
	return nil
}
