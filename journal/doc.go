// Package journal is one partition's log: an append-only sequence of
// message batches kept as a directory of segment files.
//
// In walmq the journal is the materialised view of the Raft log: every
// batch carries the index of the Raft entry it came from, Append refuses a
// batch whose index is not above the last one (ErrStaleIndex), and on
// restart LastRaftIndex tells the state machine which replayed entries to
// skip. The journal is therefore not synced per append; it is synced before
// a snapshot is declared, and on Close.
//
// # Usage
//
//	j, err := journal.Open(dir, journal.Options{})
//	first, err := j.Append(journal.Batch{RaftIndex: 7, Timestamp: now, Messages: msgs})
//	err = j.Sync()
//	msgs, err := j.Read(first, 1000, 1<<20)
//	err = j.Close()
//
// # Files
//
//	<dir>/<base>.seg   records; <base> is the first offset, 20 decimal digits
//	<dir>/<base>.idx   sparse offset index of the segment, rebuildable
//
// A record never spans segments, so retention deletes whole segments. The
// tail segment is sealed when the next record would take it past
// Options.SegmentBytes: its data is synced, its index written whole and
// synced, and a new segment is created and its directory entry synced.
//
// # Record format (version 1)
//
// All integers are little-endian; 8-byte fields sit at multiples of 8.
//
//	off size field
//	  0    4 magic      "WMQ1" (0x57 0x4D 0x51 0x31)
//	  4    1 version    1
//	  5    1 flags      bit 0: body encrypted with key KeyID; others 0
//	  6    2 reserved   0
//	  8    4 length     bytes of the whole record, header included
//	 12    4 crc        CRC-32C (Castagnoli) of bytes [0,12) and [16,length)
//	 16    8 baseOffset offset of the first message
//	 24    4 count      number of messages, at least 1
//	 28    4 keyID      encryption key id, 0 when not encrypted
//	 32    8 raftIndex  index of the Raft log entry of this batch
//	 40    8 timestamp  largest message timestamp, Unix nanoseconds
//	 48      body       count messages
//
// Message i has offset baseOffset+i and is encoded as
//
//	uvarint  n             length of the rest of the message
//	varint   tsDelta       message timestamp minus record timestamp (zig-zag)
//	uvarint  keyLen, key
//	uvarint  idLen,  id    producer message id, empty if none
//	uvarint  hdrCount, then hdrCount times: uvarint kLen, k, uvarint vLen, v
//	         payload       the remaining bytes of the n
//
// Encryption at rest will set flag bit 0 and keyID and encrypt the body;
// version 1 readers refuse such a record rather than misread it.
//
// # Index format
//
// The index file is a sequence of 32-byte entries, each naming a record:
//
//	off size field
//	  0    8 offset     baseOffset of the record
//	  8    8 position   byte position of the record in the segment
//	 16    8 maxTS      largest batch timestamp up to and including it
//	 24    4 reserved   0
//	 28    4 crc        CRC-32C of bytes [0,28)
//
// Entries are sparse (one at least every Options.IndexIntervalBytes) plus
// one for the last record covered by each Sync. An entry is written only
// after the data it names has been synced, and the file is read up to the
// first entry that is damaged or out of order.
//
// # Crash safety and recovery
//
// Open lists the segments and, for each, reads its index and checks the
// record named by the last entry; the last entry whose record is intact is
// the anchor, and the segment is trusted up to the end of that record.
// From there Open reads every record to the end of the file, so a sealed
// segment costs one or a few records and the tail what was written after
// its last sync. Then:
//
//  1. In a sealed segment, any record that fails its checks is damage,
//     never a torn write: sealed segments were synced whole before the
//     next one was created. Open does not fail for it: it logs it at ERROR
//     and records the segment as damaged (Damaged, SegmentInfo.Damage,
//     Options.OnDamage) with the *CorruptionError naming the file and
//     byte position. The segment is taken to end where the next begins;
//     reads that reach the damaged record keep failing with that error,
//     and nothing after it in the segment is trusted until it is repaired.
//     If the damaged segment would become the tail (the tail after it is
//     empty and removed, step 4), Open fails with the error instead.
//  2. In the tail segment, a record that fails its checks is a torn write
//     when no intact record follows it anywhere in the file: the file is
//     truncated there, synced, and a warning logged. If an intact record
//     does follow, the damage is not a torn write and Open returns a
//     *CorruptionError; nothing is truncated.
//  3. Records must continue the offsets and Raft indexes of the ones
//     before; a gap is corruption.
//  4. A tail segment left empty by a crash right after a roll is removed.
//
// Records before the anchor are not read by Open; Read checks the CRC of
// every record it reads (also those it skips to reach the offset asked
// for) and that each starts where the one before ended, and Verify checks
// every record of every segment. A read or Verify that meets damage in a
// sealed segment records it as Open does.
//
// # Scrubbing and repair
//
// Scrub(ctx, base, pace) reads one sealed segment whole, at the rate pace
// allows, and checks every record as Verify does, including that the
// offsets run exactly from base to the next segment's first; damage is
// recorded as above. ReadRecords streams raw records of an offset range,
// each checked before it is handed on: a damaged one ends it with its
// *CorruptionError, so a journal never passes on a record that fails its
// checks.
//
// A damaged sealed segment is repaired by replacing its file with records
// from another replica. Records are one per Raft entry and deterministic,
// so replicas agree on every record's bytes and boundaries even where
// their segment boundaries differ. BeginReplace(base) creates
// <base>.seg.repair; Replacement.Append checks each record offered (CRC,
// messages, that it starts where the previous ended, that its offsets
// stay within [base, next) and its Raft index above the previous
// segment's last and below the next segment's first, and that it equals
// the segment's own record at the same byte position wherever that one is
// intact) and writes it. Commit checks that the records end exactly at
// next, syncs the file, writes and syncs <base>.idx.repair (ending with an
// entry for the last record, so the next Open reads one record), renames
// the segment, then the index, over the old ones, syncs the directory,
// opens the new file and swaps it in: later reads use it, reads in
// progress on the old file finish first. A refused record refuses the
// whole replacement and nothing changes. A crash before the segment's
// rename leaves the old file and *.repair files, which Open removes; after
// it, the new file with an old or new index, both checked as any index.
//
// # Errors
//
// After a failed write or sync the journal returns the error wrapped in
// ErrFailed and refuses further appends and syncs: after a failed fsync
// the state of the page cache is unknown, and only a reopen, which
// recovers from what is on disk, is safe. What was synced before is never
// lost.
package journal
