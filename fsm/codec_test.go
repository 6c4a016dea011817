package fsm

import (
	"reflect"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
)

func sampleCommands() []any {
	return []any{
		&Publish{Topic: "orders", Partition: 3, Timestamp: -5, Messages: []journal.Message{
			{Key: []byte("k"), ID: "id", Headers: []journal.Header{{Key: "h", Value: []byte("v")}}, Payload: []byte("p"), Timestamp: 7},
			{Payload: []byte("second")},
		}},
		&Settle{Topic: "t", Group: "g", Offsets: map[int][]uint64{0: {5, 1, 3, 3}, 7: {1 << 40}}},
		&CreateTopic{Name: "t", Config: TopicConfig{Partitions: 2, MaxAge: time.Hour, MaxBytes: 10, DedupWindow: time.Minute}},
		&UpdateTopic{Name: "t", Config: TopicConfig{Partitions: 2}},
		&DeleteTopic{Name: "t"},
		&CreateGroup{Topic: "t", Group: "g", Config: GroupConfig{AckWait: time.Second, MaxDeliver: 3}, Start: []uint64{1, 2}},
		&DeleteGroup{Topic: "t", Group: "g"},
		&ResetGroup{Topic: "t", Group: "g", Offsets: []uint64{4, 5}},
		&Retention{Topic: "t", Before: []uint64{9}},
		&DeadLetter{Topic: "t", Group: "g", Partition: 1, Offset: 2, Deliveries: 3, Reason: "r", Message: journal.Message{Payload: []byte("x")}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, cmd := range sampleCommands() {
		b, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		want := cmd
		if s, ok := cmd.(*Settle); ok { // offsets come back sorted and unique
			want = &Settle{Topic: s.Topic, Group: s.Group, Offsets: map[int][]uint64{0: {1, 3, 5}, 7: {1 << 40}}}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%T round trip:\n got %+v\nwant %+v", cmd, got, want)
		}
	}
	if _, err := Encode(struct{}{}); err == nil {
		t.Fatal("encoded an unknown command")
	}
}

// FuzzDecode feeds arbitrary bytes to the command decoder: it must never
// panic, and whatever it accepts must encode and decode to the same value.
func FuzzDecode(f *testing.F) {
	for _, cmd := range sampleCommands() {
		b, _ := Encode(cmd)
		f.Add(b)
	}
	f.Add([]byte{byte(OpPublish), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(cmd)
		if err != nil {
			t.Fatalf("re-encode %T: %v", cmd, err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode %T: %v", cmd, err)
		}
		if _, ok := cmd.(*Settle); !ok && !reflect.DeepEqual(normalizeCmd(again), normalizeCmd(cmd)) {
			t.Fatalf("round trip changed %T:\n%+v\n%+v", cmd, cmd, again)
		}
		if p, ok := cmd.(*Publish); ok {
			h, _ := decodePublishHeader(data[1:], 1<<30)
			if h.Topic != p.Topic || h.Count != len(p.Messages) {
				t.Fatalf("header %+v disagrees with %+v", h, p)
			}
		}
	})
}

// normalizeCmd maps empty slices to nil so that decoded values compare.
func normalizeCmd(cmd any) any {
	p, ok := cmd.(*Publish)
	if !ok {
		return cmd
	}
	out := *p
	out.Messages = make([]journal.Message, len(p.Messages))
	for i, m := range p.Messages {
		if len(m.Key) == 0 {
			m.Key = nil
		}
		if len(m.Payload) == 0 {
			m.Payload = nil
		}
		if len(m.Headers) == 0 {
			m.Headers = nil
		}
		for j := range m.Headers {
			if len(m.Headers[j].Value) == 0 {
				m.Headers[j].Value = nil
			}
		}
		out.Messages[i] = m
	}
	return &out
}

// TestEncodePublishParts: an entry encoded from its requests' slices is
// the entry of the gathered messages, byte for byte.
func TestEncodePublishParts(t *testing.T) {
	all := sampleCommands()[0].(*Publish).Messages
	all = append(all, journal.Message{Key: []byte("k3"), Payload: []byte("third")})
	parts := [][]journal.Message{all[:1], nil, all[1:]}
	want := encodePublish(&Publish{Topic: "orders", Partition: 3, Timestamp: 9, Messages: all})
	got := EncodePublishParts("orders", 3, 9, parts)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parts encode to %x, want %x", got, want)
	}
	cmd, err := Decode(got)
	if err != nil || !reflect.DeepEqual(cmd.(*Publish).Messages, all) {
		t.Fatalf("decoded %+v, %v", cmd, err)
	}
}
