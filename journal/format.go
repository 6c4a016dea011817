package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// The byte format of a batch record is specified in doc.go. Constants here
// must agree with it.
const (
	batchMagic      uint32 = 0x31514d57 // "WMQ1" read as little-endian bytes
	batchVersion    uint8  = 1
	batchHeaderSize        = 48

	// flagEncrypted marks a body that is encrypted with key KeyID. Version 1
	// writers never set it; readers refuse it until encryption exists.
	flagEncrypted uint8 = 1 << 0
	knownFlags          = flagEncrypted
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeader is the fixed-size header in front of every batch record.
type batchHeader struct {
	Version    uint8
	Flags      uint8
	Length     uint32 // whole record, header included
	CRC        uint32
	BaseOffset uint64
	Count      uint32
	KeyID      uint32
	RaftIndex  uint64
	Timestamp  int64
}

// lastOffset is the offset of the batch's last message.
func (h *batchHeader) lastOffset() uint64 { return h.BaseOffset + uint64(h.Count) - 1 }

// putHeader writes h into b[:batchHeaderSize] with a zero CRC field.
func putHeader(b []byte, h *batchHeader) {
	binary.LittleEndian.PutUint32(b[0:], batchMagic)
	b[4] = h.Version
	b[5] = h.Flags
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint32(b[8:], h.Length)
	binary.LittleEndian.PutUint32(b[12:], 0)
	binary.LittleEndian.PutUint64(b[16:], h.BaseOffset)
	binary.LittleEndian.PutUint32(b[24:], h.Count)
	binary.LittleEndian.PutUint32(b[28:], h.KeyID)
	binary.LittleEndian.PutUint64(b[32:], h.RaftIndex)
	binary.LittleEndian.PutUint64(b[40:], uint64(h.Timestamp))
}

// recordTimestamp is the timestamp field of an encoded record.
func recordTimestamp(rec []byte) int64 { return int64(binary.LittleEndian.Uint64(rec[40:])) }

// batchCRC is the CRC32-C of a whole record minus its own CRC field.
func batchCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[0:12])
	return crc32.Update(c, castagnoli, rec[16:])
}

// parseHeader decodes and checks the fixed header in b (at least
// batchHeaderSize bytes). It checks what can be checked without the body:
// magic, version, flags, reserved bytes, length bounds and count.
func parseHeader(b []byte, maxBatch int) (batchHeader, error) {
	var h batchHeader
	if len(b) < batchHeaderSize {
		return h, errShort
	}
	if binary.LittleEndian.Uint32(b[0:]) != batchMagic {
		return h, fmt.Errorf("bad magic %#08x", binary.LittleEndian.Uint32(b[0:]))
	}
	h.Version = b[4]
	h.Flags = b[5]
	h.Length = binary.LittleEndian.Uint32(b[8:])
	h.CRC = binary.LittleEndian.Uint32(b[12:])
	h.BaseOffset = binary.LittleEndian.Uint64(b[16:])
	h.Count = binary.LittleEndian.Uint32(b[24:])
	h.KeyID = binary.LittleEndian.Uint32(b[28:])
	h.RaftIndex = binary.LittleEndian.Uint64(b[32:])
	h.Timestamp = int64(binary.LittleEndian.Uint64(b[40:]))
	switch {
	case h.Version != batchVersion:
		return h, fmt.Errorf("unknown version %d", h.Version)
	case h.Flags&^knownFlags != 0:
		return h, fmt.Errorf("unknown flags %#02x", h.Flags)
	case h.Flags&flagEncrypted != 0:
		return h, fmt.Errorf("encrypted batch (key %d) but no key is configured", h.KeyID)
	case b[6] != 0 || b[7] != 0:
		return h, fmt.Errorf("reserved header bytes are not zero")
	case h.Length < batchHeaderSize || int64(h.Length) > int64(maxBatch):
		return h, fmt.Errorf("batch length %d out of range [%d, %d]", h.Length, batchHeaderSize, maxBatch)
	case h.Count == 0:
		return h, fmt.Errorf("empty batch")
	case h.Count > h.Length: // every message takes at least one byte
		return h, fmt.Errorf("count %d exceeds length %d", h.Count, h.Length)
	case h.BaseOffset > math.MaxUint64-uint64(h.Count):
		return h, fmt.Errorf("offset overflow")
	}
	return h, nil
}

// checkRecord parses the header of rec (which must hold the whole record)
// and verifies its CRC.
func checkRecord(rec []byte, maxBatch int) (batchHeader, error) {
	h, err := parseHeader(rec, maxBatch)
	if err != nil {
		return h, err
	}
	if len(rec) < int(h.Length) {
		return h, errShort
	}
	if got := batchCRC(rec[:h.Length]); got != h.CRC {
		return h, fmt.Errorf("checksum mismatch: stored %#08x, computed %#08x", h.CRC, got)
	}
	return h, nil
}

// MessageSize is the number of bytes m counts against the size limits:
// key, id, headers and payload. Every layer measures messages with it.
func MessageSize(m *Message) int {
	n := len(m.Key) + len(m.ID) + len(m.Payload)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// appendMessage encodes m at the end of dst. m's timestamp (def when it
// has none) is stored as a zig-zag delta from the record's timestamp ts.
func appendMessage(dst []byte, m *Message, def, ts int64) []byte {
	delta := def - ts
	if m.Timestamp != 0 {
		delta = m.Timestamp - ts
	}
	bodyLen := varintLen(delta) +
		uvarintLen(uint64(len(m.Key))) + len(m.Key) +
		uvarintLen(uint64(len(m.ID))) + len(m.ID) +
		uvarintLen(uint64(len(m.Headers)))
	for _, h := range m.Headers {
		bodyLen += uvarintLen(uint64(len(h.Key))) + len(h.Key) + uvarintLen(uint64(len(h.Value))) + len(h.Value)
	}
	bodyLen += len(m.Payload)
	dst = binary.AppendUvarint(dst, uint64(bodyLen))
	dst = binary.AppendVarint(dst, delta)
	dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
	dst = append(dst, m.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(m.ID)))
	dst = append(dst, m.ID...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return append(dst, m.Payload...)
}

// encodeBatch appends the record for msgs to dst. ts is the timestamp of
// messages that have none; the record's timestamp is the largest message
// timestamp.
func encodeBatch(dst []byte, base, raftIndex uint64, ts int64, msgs []Message) []byte {
	start := len(dst)
	maxTS := int64(math.MinInt64)
	for i := range msgs {
		if msgs[i].Timestamp != 0 {
			maxTS = max(maxTS, msgs[i].Timestamp)
		} else {
			maxTS = max(maxTS, ts)
		}
	}
	dst = append(dst, make([]byte, batchHeaderSize)...)
	for i := range msgs {
		dst = appendMessage(dst, &msgs[i], ts, maxTS)
	}
	rec := dst[start:]
	h := batchHeader{
		Version:    batchVersion,
		Length:     uint32(len(rec)),
		BaseOffset: base,
		Count:      uint32(len(msgs)),
		RaftIndex:  raftIndex,
		Timestamp:  maxTS,
	}
	putHeader(rec, &h)
	binary.LittleEndian.PutUint32(rec[12:], batchCRC(rec))
	return dst
}

// readLimits bounds what decodeMessages returns.
type readLimits struct {
	from     uint64 // skip messages below this offset
	max      int    // stop when this many messages are decoded
	maxBytes int    // stop before exceeding this many message bytes; 0: no limit
	bytes    int    // message bytes decoded so far
}

// full reports whether out may not take a message of n more bytes.
func (l *readLimits) full(out []Message, n int) bool {
	return len(out) >= l.max || (l.maxBytes > 0 && len(out) > 0 && l.bytes+n > l.maxBytes)
}

// decodeMessages decodes the messages of a checked record within the
// limits and appends them to dst; done reports that the limits were
// reached. Returned messages alias rec. The headers of all messages of the
// batch share one backing array.
func decodeMessages(dst []Message, h *batchHeader, rec []byte, l *readLimits) (out []Message, done bool, err error) {
	body := rec[batchHeaderSize:h.Length]
	var hdrs []Header
	for i := uint32(0); i < h.Count; i++ {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return dst, false, fmt.Errorf("message %d: bad length", i)
		}
		m := body[k : k+int(n)]
		body = body[k+int(n):]
		off := h.BaseOffset + uint64(i)
		if off < l.from {
			continue
		}
		msg := Message{Offset: off}
		if msg, hdrs, err = decodeMessage(msg, m, h.Timestamp, hdrs); err != nil {
			return dst, false, fmt.Errorf("message %d: %w", i, err)
		}
		size := MessageSize(&msg)
		if l.full(dst, size) {
			return dst, true, nil
		}
		l.bytes += size
		dst = append(dst, msg)
	}
	if len(body) != 0 {
		return dst, false, fmt.Errorf("%d trailing bytes after %d messages", len(body), h.Count)
	}
	return dst, len(dst) >= l.max, nil
}

func decodeMessage(msg Message, m []byte, ts int64, hdrs []Header) (Message, []Header, error) {
	d, k := binary.Varint(m)
	if k <= 0 {
		return msg, hdrs, fmt.Errorf("bad timestamp")
	}
	m = m[k:]
	msg.Timestamp = ts + d
	var ok bool
	if msg.Key, m, ok = readBytes(m); !ok {
		return msg, hdrs, fmt.Errorf("bad key")
	}
	var id []byte
	if id, m, ok = readBytes(m); !ok {
		return msg, hdrs, fmt.Errorf("bad id")
	}
	if len(id) > 0 {
		msg.ID = string(id)
	}
	nh, k := binary.Uvarint(m)
	if k <= 0 || nh > uint64(len(m)) {
		return msg, hdrs, fmt.Errorf("bad header count")
	}
	m = m[k:]
	if nh > 0 {
		start := len(hdrs)
		for j := uint64(0); j < nh; j++ {
			var hk, hv []byte
			if hk, m, ok = readBytes(m); !ok {
				return msg, hdrs, fmt.Errorf("bad header key")
			}
			if hv, m, ok = readBytes(m); !ok {
				return msg, hdrs, fmt.Errorf("bad header value")
			}
			hdrs = append(hdrs, Header{Key: string(hk), Value: hv})
		}
		msg.Headers = hdrs[start:len(hdrs):len(hdrs)]
	}
	msg.Payload = m
	if len(msg.Key) == 0 {
		msg.Key = nil
	}
	return msg, hdrs, nil
}

// readBytes reads a uvarint length and that many bytes from b.
func readBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, b, false
	}
	return b[k : k+int(n) : k+int(n)], b[k+int(n):], true
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// Index entries: see doc.go.
const indexEntrySize = 32

type indexEntry struct {
	Offset uint64 // base offset of the batch at Pos
	Pos    int64  // byte position of the batch in its segment
	MaxTS  int64  // largest batch timestamp up to and including this batch
}

func putIndexEntry(b []byte, e indexEntry) {
	binary.LittleEndian.PutUint64(b[0:], e.Offset)
	binary.LittleEndian.PutUint64(b[8:], uint64(e.Pos))
	binary.LittleEndian.PutUint64(b[16:], uint64(e.MaxTS))
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[0:28], castagnoli))
}

// parseIndex decodes entries from an index file's bytes. It stops at the
// first entry that is incomplete, fails its CRC, or does not advance both
// offset and position: everything before it is usable, the rest is rebuilt
// from the segment.
func parseIndex(b []byte) []indexEntry {
	var out []indexEntry
	for len(b) >= indexEntrySize {
		e := b[:indexEntrySize]
		b = b[indexEntrySize:]
		if crc32.Checksum(e[0:28], castagnoli) != binary.LittleEndian.Uint32(e[28:]) || binary.LittleEndian.Uint32(e[24:]) != 0 {
			break
		}
		ie := indexEntry{
			Offset: binary.LittleEndian.Uint64(e[0:]),
			Pos:    int64(binary.LittleEndian.Uint64(e[8:])),
			MaxTS:  int64(binary.LittleEndian.Uint64(e[16:])),
		}
		if ie.Pos < 0 {
			break
		}
		if n := len(out); n > 0 && (ie.Offset <= out[n-1].Offset || ie.Pos <= out[n-1].Pos || ie.MaxTS < out[n-1].MaxTS) {
			break
		}
		out = append(out, ie)
	}
	return out
}
