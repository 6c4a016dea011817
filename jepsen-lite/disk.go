package main

// Disk faults, applied to a node's data directory while its process is
// dead (SIGKILLed), before it is restarted. A paused (SIGSTOPped) node must
// be killed first, never resumed: its open files and in-memory sizes would
// no longer match what is on disk.
//
// The data directory holds raft/raft.db (the Raft log, never touched here),
// snapshots/<id>/ (meta.json, manifest, files/<topic>/<p>/<base>.seg) and
// topics/<topic>/<partition>/<base>.seg and .idx, one directory per journal
// (cluster/node.go:289-310, fsm/fsm.go:314, journal/doc.go:19-22).
//
// # What is durable, and so what loseUnsyncedTails may cut
//
// In walmq the journal is not what an acknowledgement waits for. A publish
// is acknowledged once its Raft entry is committed, which is fsynced in
// raft-boltdb (docs/design.md:99); the journals are a materialised view of
// the Raft log and are not synced per append or per apply (journal/doc.go:8,
// fsm/doc.go:22-23, journal/journal.go:357 Append does not sync; the only
// callers of Journal.Sync are fsm/snapshot.go:148 Persist and Close). After
// a restart Raft does not restore its snapshot (NoSnapshotRestoreOnStart,
// cluster/node.go:328): the node loads its newest snapshot's manifest
// (cluster/node.go:406, fsm/snapshot.go:187), opens the journals as they
// are, and Raft replays every entry after the snapshot's index; a journal
// that already holds an entry skips it. Raft never compacts its log past the
// newest snapshot's index (hashicorp/raft compactLogs truncates to at most
// the snapshot's index). So journal bytes past what the newest snapshot
// covers may be lost: the replay writes them again. Two things bound the
// cut from below:
//
//  1. What the journal itself guarantees: an index entry is written only
//     after the data it names was synced (journal/doc.go:70-73; Sync marks
//     the sync point under the lock, syncs, then writes the index,
//     journal/segment.go:451 syncPoint, :459 sync, :432 writeIndex,
//     journal/journal.go:438-467; a roll syncs the data, writes and syncs the
//     whole index, journal/journal.go:414-432). Recovery trusts the tail up
//     to the end of the record named by the last intact index entry, its
//     anchor (journal/segment.go:114-136), so that end is durable. A real
//     power cut never takes it; past it, the OS may have written any prefix
//     of what the journal wrote, and a cut there, at a record boundary or
//     mid-record (a torn write), is what recovery must cope with
//     (journal/doc.go:94-98). The index may be synced later than the data,
//     so the true sync point can lie beyond the anchor (a kill between the
//     fsync and the index write, or the snapshot store's fsync of a linked
//     tail); cutting such bytes is more than a power cut does, but still
//     safe by the replay argument above.
//  2. What the snapshots hold: a snapshot records each segment's size and
//     hard-links the file (fsm/snapshot.go:112-118), and the first Size
//     bytes of a linked inode may never change (fsm/snapstore/doc.go:7-12):
//     truncating the journal's name truncates the snapshot's file too. And
//     the index does not always cover a snapshot: Restore copies a
//     partition's last segment, synced, but writes no index for it
//     (fsm/snapshot.go:284, :305-330), so a follower that installed a
//     snapshot has a tail whose index is empty, while Raft has compacted its
//     log behind the snapshot and LoadLocal refuses a journal behind it
//     (fsm/snapshot.go:210). Cutting at the index's anchor alone would lose
//     acknowledged data there. So the tail is never cut below the size any
//     completed snapshot records for its file.
//
// The cut point is the larger of the two, and loseUnsyncedTails truncates
// the tail segment at a random point at or after it (nothing if none is
// left). One more case is avoided: a tail cut to nothing is removed by Open,
// which makes the segment before it the tail (journal/journal.go:257-275);
// if that segment is damaged Open fails instead (journal/doc.go:92-93), so
// when it fails journal.VerifyFile the tail keeps its first record.
//
// The tail's index is written after every sync but fsynced only when the
// segment is sealed (journal/journal.go:422; docs/design.md:32): none of it
// is guaranteed, and losing entries only moves the anchor back and makes
// recovery scan more of the tail. It is truncated at a random entry
// boundary or mid-entry. Sealed segments and their indexes were synced
// whole before the next segment was created and are never cut.
//
// # flipSealedBit
//
// A bit flipped in a sealed segment is not a torn write: the journal opens
// the segment damaged (or finds the damage on read, Verify or Scrub), never
// returns the damaged record (journal/doc.go:84-93, :104-117), and the node's
// scrubber repairs it from a peer (cluster/scrub.go). The segment before a
// tail that recovery would remove (one without an intact first record) is
// not a candidate: it would become the tail, and Open fails on a damaged
// tail instead of opening it damaged.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/walmq/walmq/journal"
)

// errNoSealedSegment is flipSealedBit's error when no partition of the
// node has a sealed segment it may damage.
var errNoSealedSegment = errors.New("no sealed segment")

// The journal's on-disk format (journal/doc.go, journal/format.go).
const (
	diskRecordMagic  uint32 = 0x31514d57 // "WMQ1"
	diskRecordHeader        = 48
	diskMaxRecord           = 1 << 30
	diskIndexEntry          = 32
)

var diskCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// diskSegment is one segment file of a journal.
type diskSegment struct {
	base uint64
	path string
	size int64
}

// diskJournal is one partition's journal directory.
type diskJournal struct {
	topic string
	part  int
	segs  []diskSegment // ascending base; the last is the tail
}

func (j *diskJournal) name() string { return j.topic + "/" + strconv.Itoa(j.part) }

// snapshotName is the name a snapshot gives a segment: its slash path
// relative to the topics directory (fsm/snapshot.go:112).
func (j *diskJournal) snapshotName(s diskSegment) string {
	return path.Join(j.topic, strconv.Itoa(j.part), filepath.Base(s.path))
}

// diskNode names the node whose data directory is dir (<run>/n1/data: n1).
func diskNode(dataDir string) string {
	d := filepath.Clean(dataDir)
	if filepath.Base(d) == "data" {
		return filepath.Base(filepath.Dir(d))
	}
	return filepath.Base(d)
}

// diskJournals lists the journals under dataDir/topics, sorted by topic and
// partition, each with its segments. A missing topics directory has none.
func diskJournals(dataDir string) ([]diskJournal, error) {
	topicsDir := filepath.Join(dataDir, "topics")
	topics, err := os.ReadDir(topicsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []diskJournal
	for _, t := range topics {
		// Topic names never start with '.': those are trash of deleted topics.
		if !t.IsDir() || strings.HasPrefix(t.Name(), ".") {
			continue
		}
		parts, err := os.ReadDir(filepath.Join(topicsDir, t.Name()))
		if err != nil {
			return nil, err
		}
		var js []diskJournal
		for _, p := range parts {
			n, err := strconv.Atoi(p.Name())
			if !p.IsDir() || err != nil || n < 0 || strconv.Itoa(n) != p.Name() {
				continue
			}
			dir := filepath.Join(topicsDir, t.Name(), p.Name())
			segs, err := diskSegments(dir)
			if err != nil {
				return nil, err
			}
			if len(segs) > 0 {
				js = append(js, diskJournal{topic: t.Name(), part: n, segs: segs})
			}
		}
		sort.Slice(js, func(a, b int) bool { return js[a].part < js[b].part })
		out = append(out, js...)
	}
	return out, nil
}

// diskSegments lists the segment files of a journal directory by base.
func diskSegments(dir string) ([]diskSegment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []diskSegment
	for _, e := range ents {
		n := e.Name()
		if len(n) != 24 || !strings.HasSuffix(n, ".seg") || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(n[:20], 10, 64)
		if err != nil || fmt.Sprintf("%020d.seg", base) != n {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		segs = append(segs, diskSegment{base: base, path: filepath.Join(dir, n), size: fi.Size()})
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].base < segs[b].base })
	return segs, nil
}

// diskRecordLen is the length of the intact record at pos in data (magic,
// length within data, CRC-32C of [0,12) and [16,length)), or 0 if there is
// none.
func diskRecordLen(data []byte, pos int64) int64 {
	if pos < 0 || int64(len(data))-pos < diskRecordHeader {
		return 0
	}
	b := data[pos:]
	if binary.LittleEndian.Uint32(b[0:]) != diskRecordMagic {
		return 0
	}
	n := int64(binary.LittleEndian.Uint32(b[8:]))
	if n < diskRecordHeader || n > int64(len(b)) || n > diskMaxRecord {
		return 0
	}
	c := crc32.Update(0, diskCastagnoli, b[0:12])
	c = crc32.Update(c, diskCastagnoli, b[16:n])
	if c != binary.LittleEndian.Uint32(b[12:]) {
		return 0
	}
	return n
}

// diskRecordBounds returns the start and end of every intact record from
// pos on, stopping at the first that is not intact.
func diskRecordBounds(data []byte, pos int64) (starts, ends []int64) {
	for {
		n := diskRecordLen(data, pos)
		if n == 0 {
			return starts, ends
		}
		starts, ends = append(starts, pos), append(ends, pos+n)
		pos += n
	}
}

// diskIndexPos is an entry of a segment's index: the record of base
// offset off is at byte pos.
type diskIndexPos struct {
	off uint64
	pos int64
}

// diskParseIndex decodes index entries as the journal does (journal/
// format.go parseIndex): up to the first incomplete, damaged or
// non-advancing entry.
func diskParseIndex(b []byte) []diskIndexPos {
	var out []diskIndexPos
	var lastTS int64
	for len(b) >= diskIndexEntry {
		e := b[:diskIndexEntry]
		b = b[diskIndexEntry:]
		if crc32.Checksum(e[0:28], diskCastagnoli) != binary.LittleEndian.Uint32(e[28:]) || binary.LittleEndian.Uint32(e[24:]) != 0 {
			break
		}
		ie := diskIndexPos{off: binary.LittleEndian.Uint64(e[0:]), pos: int64(binary.LittleEndian.Uint64(e[8:]))}
		ts := int64(binary.LittleEndian.Uint64(e[16:]))
		if ie.pos < 0 {
			break
		}
		if n := len(out); n > 0 && (ie.off <= out[n-1].off || ie.pos <= out[n-1].pos || ts < lastTS) {
			break
		}
		out, lastTS = append(out, ie), ts
	}
	return out
}

// diskAnchorEnd is where the journal's recovery anchors a segment: the end
// of the record named by the last index entry whose record is intact
// (journal/segment.go recoverSegment), 0 if none. Everything before it was
// synced before the entry was written.
func diskAnchorEnd(data []byte, base uint64, entries []diskIndexPos) int64 {
	if len(entries) == 0 || entries[0].pos != 0 || entries[0].off != base {
		return 0
	}
	for k := len(entries) - 1; k >= 0; k-- {
		e := entries[k]
		n := diskRecordLen(data, e.pos)
		if n > 0 && binary.LittleEndian.Uint64(data[e.pos+16:]) == e.off {
			return e.pos + n
		}
	}
	return 0
}

// diskSnapshotSizes returns, for every segment file a completed snapshot
// holds, the largest size any of them records (the node's snapshot store
// format: fsm/snapstore/doc.go, store.go meta).
func diskSnapshotSizes(dataDir string) (map[string]int64, error) {
	dir := filepath.Join(dataDir, "snapshots")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int64{}, nil
	}
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue // a snapshot being built or deleted; the node removes it
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", e.Name(), err)
		}
		var m struct {
			Files []struct {
				Name string
				Size int64
			}
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("snapshot %s: meta.json: %w", e.Name(), err)
		}
		for _, f := range m.Files {
			sizes[f.Name] = max(sizes[f.Name], f.Size)
		}
	}
	return sizes, nil
}

// loseUnsyncedTails simulates a power cut on a node whose process is dead:
// in every partition's journal under dataDir/topics, the tail segment loses
// a random part of what the journal does not guarantee durable, possibly
// mid-record, and the tail's index a random part of its entries. It never
// cuts below the journal's anchor or what a snapshot holds (see the top of
// this file), so it never removes acknowledged data. It returns what it
// did, one clause per partition.
func loseUnsyncedTails(dataDir string, rng *rand.Rand) (string, error) {
	js, err := diskJournals(dataDir)
	if err != nil {
		return "", fmt.Errorf("lose unsynced tails: %w", err)
	}
	snaps, err := diskSnapshotSizes(dataDir)
	if err != nil {
		return "", fmt.Errorf("lose unsynced tails: cannot tell what the snapshots hold, cutting nothing: %w", err)
	}
	var clauses []string
	for i := range js {
		c, err := loseUnsyncedTail(&js[i], snaps, rng)
		if err != nil {
			return diskSummary(dataDir, clauses), fmt.Errorf("lose unsynced tails: %s: %w", js[i].name(), err)
		}
		clauses = append(clauses, c)
	}
	if len(clauses) == 0 {
		clauses = append(clauses, "no journals")
	}
	return diskSummary(dataDir, clauses), nil
}

func diskSummary(dataDir string, clauses []string) string {
	return diskNode(dataDir) + ": " + strings.Join(clauses, "; ")
}

func loseUnsyncedTail(j *diskJournal, snaps map[string]int64, rng *rand.Rand) (string, error) {
	tail := j.segs[len(j.segs)-1]
	data, err := os.ReadFile(tail.path)
	if err != nil {
		return "", err
	}
	size := int64(len(data))
	idxPath := strings.TrimSuffix(tail.path, ".seg") + ".idx"
	idx, err := os.ReadFile(idxPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	anchor := diskAnchorEnd(data, tail.base, diskParseIndex(idx))
	floor := max(anchor, snaps[j.snapshotName(tail)])
	if len(j.segs) > 1 {
		// Keep the first record if cutting it would make a damaged
		// segment the tail.
		first := diskRecordLen(data, 0)
		if floor < first || first == 0 {
			prev := j.segs[len(j.segs)-2]
			if journal.VerifyFile(prev.path, prev.size) != nil {
				floor = max(floor, first)
				if first == 0 {
					floor = size
				}
			}
		}
	}
	floor = min(floor, size)

	clause := fmt.Sprintf("%s tail %s", j.name(), filepath.Base(tail.path))
	if unsynced := size - floor; unsynced > 0 {
		var cut int64
		starts, _ := diskRecordBounds(data, floor)
		if len(starts) > 0 && rng.Intn(3) == 0 {
			cut = starts[rng.Intn(len(starts))] // a record boundary
		} else {
			cut = floor + rng.Int63n(unsynced) // any byte: a torn write
		}
		if err := diskTruncate(tail.path, cut); err != nil {
			return "", err
		}
		how := "mid-record"
		if i := sort.Search(len(starts), func(i int) bool { return starts[i] >= cut }); cut == floor || i < len(starts) && starts[i] == cut {
			how = "at a record boundary"
		}
		clause += fmt.Sprintf(" cut %d of %d unsynced bytes (%s; kept %d)", size-cut, unsynced, how, cut)
	} else {
		clause += fmt.Sprintf(" nothing unsynced (%d bytes)", size)
	}
	if n := int64(len(idx)); n > 0 && rng.Intn(2) == 0 {
		var cut int64
		if rng.Intn(2) == 0 {
			cut = rng.Int63n(n/diskIndexEntry+1) * diskIndexEntry
		} else {
			cut = rng.Int63n(n + 1)
		}
		if cut < n {
			if err := diskTruncate(idxPath, cut); err != nil {
				return "", err
			}
			clause += fmt.Sprintf(", index %d -> %d bytes", n, cut)
		}
	}
	return clause, nil
}

// diskTruncate truncates the file at path to size and syncs it.
func diskTruncate(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// flipSealedBit flips one random bit inside a random record of a random
// sealed segment (not the tail) of a random partition under dataDir/topics,
// on a node whose process is dead. It returns the file, byte position and
// bit, or errNoSealedSegment when no partition has a sealed segment.
func flipSealedBit(dataDir string, rng *rand.Rand) (string, error) {
	js, err := diskJournals(dataDir)
	if err != nil {
		return "", fmt.Errorf("flip sealed bit: %w", err)
	}
	type candidate struct {
		j    *diskJournal
		segs []diskSegment
	}
	var cands []candidate
	for i := range js {
		j := &js[i]
		sealed := j.segs[:len(j.segs)-1]
		if len(sealed) > 0 {
			tail := j.segs[len(j.segs)-1]
			if n, err := diskFirstRecordLen(tail.path); err != nil {
				return "", fmt.Errorf("flip sealed bit: %w", err)
			} else if n == 0 {
				// Recovery removes this tail; the segment before becomes
				// the tail and is no longer sealed.
				sealed = sealed[:len(sealed)-1]
			}
		}
		var ok []diskSegment
		for _, s := range sealed {
			if s.size > 0 {
				ok = append(ok, s)
			}
		}
		if len(ok) > 0 {
			cands = append(cands, candidate{j, ok})
		}
	}
	if len(cands) == 0 {
		return "", errNoSealedSegment
	}
	c := cands[rng.Intn(len(cands))]
	s := c.segs[rng.Intn(len(c.segs))]
	data, err := os.ReadFile(s.path)
	if err != nil {
		return "", fmt.Errorf("flip sealed bit: %w", err)
	}
	if len(data) == 0 {
		return "", fmt.Errorf("flip sealed bit: %s is empty", s.path)
	}
	start, end := int64(0), int64(len(data))
	if starts, ends := diskRecordBounds(data, 0); len(starts) > 0 {
		k := rng.Intn(len(starts))
		start, end = starts[k], ends[k]
	}
	pos := start + rng.Int63n(end-start)
	bit := uint(rng.Intn(8))
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("flip sealed bit: %w", err)
	}
	b := []byte{data[pos] ^ 1<<bit}
	_, err = f.WriteAt(b, pos)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("flip sealed bit: %w", err)
	}
	return fmt.Sprintf("%s: %s sealed %s: flipped bit %d of byte %d (%#02x -> %#02x) in the record at bytes [%d, %d)",
		diskNode(dataDir), c.j.name(), filepath.Base(s.path), bit, pos, data[pos], b[0], start, end), nil
}

// diskFirstRecordLen is the length of the intact first record of the
// segment at path, 0 if it has none.
func diskFirstRecordLen(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	hdr := make([]byte, diskRecordHeader)
	if n, _ := f.ReadAt(hdr, 0); n < len(hdr) {
		return 0, nil
	}
	l := binary.LittleEndian.Uint32(hdr[8:])
	if l < diskRecordHeader || l > diskMaxRecord {
		return 0, nil
	}
	rec := make([]byte, l)
	if n, _ := f.ReadAt(rec, 0); n < len(rec) {
		return 0, nil
	}
	return diskRecordLen(rec, 0), nil
}
