package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PartitionDigest digests a partition's messages in [First, Upto).
type PartitionDigest struct {
	First, Upto uint64
	Messages    uint64
	CRC32C      uint32 // over each message's offset, timestamp, key, id, headers and payload
}

// Digest digests the messages of a partition below upto (0 or a value past
// the partition's watermark: every visible message), from the first
// retained one. Replicas that applied the same entries give equal digests
// for an equal upto, whatever their segment layout.
func (f *FSM) Digest(topic string, part int, upto uint64) (PartitionDigest, error) {
	p, err := f.Partition(topic, part)
	if err != nil {
		return PartitionDigest{}, err
	}
	j := p.Journal()
	if w := p.Watermark(); upto == 0 || upto > w {
		upto = w
	}
	d := PartitionDigest{First: j.FirstOffset(), Upto: upto}
	if d.First > upto {
		d.First = upto
	}
	var buf []byte
	for off := d.First; off < upto; {
		msgs, err := j.Read(off, 4096, 0)
		if err != nil {
			return PartitionDigest{}, fmt.Errorf("fsm: digest %s/%d at %d: %w", topic, part, off, err)
		}
		if len(msgs) == 0 {
			return PartitionDigest{}, fmt.Errorf("fsm: digest %s/%d: no message at %d below %d", topic, part, off, upto)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Offset >= upto {
				break
			}
			buf = binary.BigEndian.AppendUint64(buf[:0], m.Offset)
			buf = binary.BigEndian.AppendUint64(buf, uint64(m.Timestamp))
			buf = appendKeyIDHeaders(buf, m)
			buf = appendBytes(buf, m.Payload)
			d.CRC32C = crc32.Update(d.CRC32C, castagnoli, buf)
			d.Messages++
			off = m.Offset + 1
		}
	}
	return d, nil
}
