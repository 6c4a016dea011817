package journal

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleBatch() []Message {
	return []Message{
		{Payload: []byte("hello")},
		{Key: []byte("k"), ID: "id-1", Timestamp: 99, Payload: []byte("world"),
			Headers: []Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}},
		{Payload: nil},
	}
}

// normalize makes decoded messages comparable: empty slices become nil.
func normalize(msgs []Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		if len(m.Payload) == 0 {
			m.Payload = nil
		}
		if len(m.Key) == 0 {
			m.Key = nil
		}
		hs := make([]Header, 0, len(m.Headers))
		for _, h := range m.Headers {
			if len(h.Value) == 0 {
				h.Value = nil
			}
			hs = append(hs, h)
		}
		m.Headers = nil
		if len(hs) > 0 {
			m.Headers = hs
		}
		out[i] = m
	}
	return out
}

func decodeAll(rec []byte) (batchHeader, []Message, error) {
	h, err := checkRecord(rec, maxRecordBytes)
	if err != nil {
		return h, nil, err
	}
	l := readLimits{max: int(^uint(0) >> 1)}
	msgs, _, err := decodeMessages(nil, &h, rec, &l)
	return h, msgs, err
}

func TestEncodeDecode(t *testing.T) {
	in := sampleBatch()
	rec := encodeBatch(nil, 42, 7, 100, in)
	h, out, err := decodeAll(rec)
	if err != nil {
		t.Fatal(err)
	}
	if h.BaseOffset != 42 || h.RaftIndex != 7 || h.Timestamp != 100 || h.Count != 3 || int(h.Length) != len(rec) {
		t.Fatalf("header %+v", h)
	}
	want := normalize(in)
	for i := range want {
		want[i].Offset = 42 + uint64(i)
		if want[i].Timestamp == 0 {
			want[i].Timestamp = 100
		}
	}
	if got := normalize(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

func TestRecordChecks(t *testing.T) {
	good := encodeBatch(nil, 0, 1, 5, sampleBatch())
	tests := []struct {
		name string
		mut  func(b []byte) []byte
	}{
		{"torn_last_byte", func(b []byte) []byte { return b[:len(b)-1] }},
		{"torn_header", func(b []byte) []byte { return b[:batchHeaderSize-1] }},
		{"bad_magic", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"bad_version", func(b []byte) []byte { b[4] = 2; return b }},
		{"unknown_flag", func(b []byte) []byte { b[5] = 0x80; return b }},
		{"encrypted_without_key", func(b []byte) []byte { b[5] = flagEncrypted; return b }},
		{"reserved_set", func(b []byte) []byte { b[6] = 1; return b }},
		{"bad_checksum", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"bad_crc_field", func(b []byte) []byte { b[12] ^= 1; return b }},
		{"length_too_small", func(b []byte) []byte { b[8], b[9], b[10], b[11] = 10, 0, 0, 0; return b }},
		{"length_huge", func(b []byte) []byte { b[11] = 0x7f; return b }},
		{"zero_count", func(b []byte) []byte { b[24], b[25], b[26], b[27] = 0, 0, 0, 0; return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(bytes.Clone(good))
			if _, _, err := decodeAll(b); err == nil {
				t.Fatal("damaged record accepted")
			}
		})
	}
}

func TestIndexEntries(t *testing.T) {
	es := []indexEntry{{0, 0, 10}, {5, 100, 10}, {9, 250, 20}}
	buf := make([]byte, len(es)*indexEntrySize)
	for i, e := range es {
		putIndexEntry(buf[i*indexEntrySize:], e)
	}
	if got := parseIndex(buf); !reflect.DeepEqual(got, es) {
		t.Fatalf("parsed %+v", got)
	}
	if got := parseIndex(buf[:len(buf)-1]); len(got) != 2 {
		t.Fatalf("torn entry: parsed %d entries", len(got))
	}
	bad := bytes.Clone(buf)
	bad[indexEntrySize+3] ^= 1
	if got := parseIndex(bad); len(got) != 1 {
		t.Fatalf("bad CRC in entry 2: parsed %d entries", len(got))
	}
	// An entry that goes backwards ends the index.
	putIndexEntry(buf[2*indexEntrySize:], indexEntry{4, 300, 20})
	if got := parseIndex(buf); len(got) != 2 {
		t.Fatalf("backwards entry: parsed %d entries", len(got))
	}
}

// FuzzDecodeBatch feeds arbitrary bytes to the record decoder. It must
// never panic, and whatever it accepts must encode back to a record that
// decodes to the same messages.
func FuzzDecodeBatch(f *testing.F) {
	good := encodeBatch(nil, 3, 9, 1000, sampleBatch())
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(encodeBatch(nil, 0, 1, 0, []Message{{Payload: bytes.Repeat([]byte{0xab}, 300)}}))
	f.Add([]byte{})
	f.Add(make([]byte, batchHeaderSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, msgs, err := decodeAll(data)
		if err != nil {
			return
		}
		again := encodeBatch(nil, h.BaseOffset, h.RaftIndex, h.Timestamp, msgs)
		h2, msgs2, err := decodeAll(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if h2.BaseOffset != h.BaseOffset || h2.Count != h.Count || h2.RaftIndex != h.RaftIndex {
			t.Fatalf("header changed: %+v vs %+v", h, h2)
		}
		if !reflect.DeepEqual(normalize(msgs), normalize(msgs2)) {
			t.Fatalf("messages changed")
		}
	})
}

// FuzzParseIndex feeds arbitrary bytes to the index decoder: it must never
// panic and must only return entries in strictly increasing order.
func FuzzParseIndex(f *testing.F) {
	buf := make([]byte, 2*indexEntrySize)
	putIndexEntry(buf, indexEntry{0, 0, 1})
	putIndexEntry(buf[indexEntrySize:], indexEntry{10, 500, 2})
	f.Add(buf)
	f.Add(buf[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		es := parseIndex(data)
		for i := 1; i < len(es); i++ {
			if es[i].Offset <= es[i-1].Offset || es[i].Pos <= es[i-1].Pos || es[i].MaxTS < es[i-1].MaxTS {
				t.Fatalf("entries out of order: %+v", es)
			}
		}
	})
}
