package walmq_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/walmq/walmq"
)

func TestRead(t *testing.T) { forEachEnv(t, testRead) }

// testRead: Read returns a partition's messages in order from any offset,
// across segments, with their keys, ids, headers and timestamps; it uses
// no group, so it can be repeated and leaves consumer groups alone.
func testRead(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{SegmentBytes: 4 << 10})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{Partitions: 2})
	ts := time.Unix(1700000000, 123)
	for i := range 300 {
		m := walmq.Message{Payload: []byte(fmt.Sprintf("m%03d", i)), ID: fmt.Sprintf("id-%d", i), Timestamp: ts.Add(time.Duration(i))}
		if i == 7 {
			m.Key = []byte{0xff, 0}
			m.Headers = []walmq.Header{{Key: "h", Value: []byte("v")}}
		}
		if _, err := b.PublishTo(ctxT(t), "t", 1, m); err != nil {
			t.Fatal(err)
		}
	}
	var got []walmq.Record
	for off := uint64(5); ; {
		res, err := b.Read(ctxT(t), "t", 1, off, 64, 0)
		if err != nil {
			t.Fatalf("Read at %d: %v", off, err)
		}
		if res.FirstOffset != 0 || res.NextOffset != 300 {
			t.Fatalf("Read says the partition holds [%d, %d), want [0, 300)", res.FirstOffset, res.NextOffset)
		}
		if len(res.Records) == 0 {
			break
		}
		if len(res.Records) > 64 {
			t.Fatalf("%d records for max 64", len(res.Records))
		}
		got = append(got, res.Records...)
		off = res.Records[len(res.Records)-1].Offset + 1
	}
	if len(got) != 295 {
		t.Fatalf("read %d records from offset 5, want 295", len(got))
	}
	for i, r := range got {
		want := uint64(5 + i)
		if r.Offset != want || r.Partition != 1 || string(r.Payload) != fmt.Sprintf("m%03d", want) ||
			r.ID != fmt.Sprintf("id-%d", want) || !r.Timestamp.Equal(ts.Add(time.Duration(want))) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if r := got[2]; string(r.Key) != "\xff\x00" || len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" {
		t.Fatalf("offset 7: key %q headers %+v", r.Key, r.Headers)
	}

	// The other partition is empty; past the end reads nothing, at once.
	for _, c := range []struct {
		part   int
		offset uint64
		next   uint64
	}{{0, 0, 0}, {1, 300, 300}, {1, math.MaxUint64, 300}} {
		res, err := b.Read(ctxT(t), "t", c.part, c.offset, 10, 0)
		if err != nil || len(res.Records) != 0 || res.NextOffset != c.next {
			t.Fatalf("Read(%d, %d): %+v, %v", c.part, c.offset, res, err)
		}
	}

	// A read at the end waits for the next message.
	go func() {
		time.Sleep(100 * time.Millisecond)
		b.PublishTo(context.Background(), "t", 1, walmq.Message{Payload: []byte("late")})
	}()
	start := time.Now()
	res, err := b.Read(ctxT(t), "t", 1, 300, 10, 10*time.Second)
	if err != nil || len(res.Records) != 1 || string(res.Records[0].Payload) != "late" {
		t.Fatalf("waiting Read: %+v, %v", res, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 8*time.Second {
		t.Fatalf("waiting Read returned after %v", d)
	}
	// With nothing coming, the wait ends empty.
	res, err = b.Read(ctxT(t), "t", 1, 301, 10, 100*time.Millisecond)
	if err != nil || len(res.Records) != 0 {
		t.Fatalf("Read with nothing to come: %+v, %v", res, err)
	}

	// Reading used no group: a new group still gets everything.
	if got := drain(t, b, "g", "t", 100*time.Millisecond)[1]; len(got) != 301 {
		t.Fatalf("group got %d messages of partition 1 after the reads, want 301", len(got))
	}
}

func TestReadBadInput(t *testing.T) { forEachEnv(t, testReadBadInput) }

func testReadBadInput(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{SegmentBytes: 4 << 10})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{MaxBytes: 8 << 10})
	for i := range 300 {
		if _, err := b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprintf("%0100d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EnforceRetention(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	res, err := b.Read(ctxT(t), "t", 0, math.MaxUint64, 1, 0)
	if err != nil || res.FirstOffset == 0 || res.NextOffset != 300 {
		t.Fatalf("after retention: %+v, %v", res, err)
	}
	first := res.FirstOffset
	for _, c := range []struct {
		name   string
		topic  string
		part   int
		offset uint64
		max    int
		want   error
	}{
		{"unknown topic", "nope", 0, 0, 10, walmq.ErrTopicNotFound},
		{"partition out of range", "t", 1, 0, 10, walmq.ErrPartitionRange},
		{"negative partition", "t", -1, 0, 10, walmq.ErrPartitionRange},
		{"zero max", "t", 0, first, 0, walmq.ErrInvalidArgument},
		{"deleted by retention", "t", 0, first - 1, 10, walmq.ErrOffsetTruncated},
	} {
		if _, err := b.Read(ctxT(t), c.topic, c.part, c.offset, c.max, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	res, err = b.Read(ctxT(t), "t", 0, first, 1000, 0)
	if err != nil || len(res.Records) == 0 || res.Records[0].Offset != first {
		t.Fatalf("Read at the first retained offset %d: %+v, %v", first, res, err)
	}
}

// TestReadServedByEachReplica: in a three-node cluster every node answers
// Read from its own replica (the answer names it), and every replica
// returns the same messages at the same offsets.
func TestReadServedByEachReplica(t *testing.T) {
	ms := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !announced(ms) {
		if ctx.Err() != nil {
			t.Fatal("client addresses not announced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.addr())
	}
	c, err := walmq.Dial(ctx, strings.Join(addrs, ","), walmq.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, "t", walmq.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.Publish(ctx, "t", walmq.Message{Payload: []byte(fmt.Sprintf("m%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		one, err := walmq.Dial(ctx, m.addr(), walmq.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for off := uint64(0); off < 100; {
			res, err := one.Read(ctx, "t", 0, off, 1000, 5*time.Second)
			if err != nil {
				t.Fatalf("%s: Read: %v", m.id, err)
			}
			if res.NodeID != m.id {
				t.Fatalf("Read of %s answered by %s", m.id, res.NodeID)
			}
			if len(res.Records) == 0 {
				t.Fatalf("%s: nothing at offset %d", m.id, off)
			}
			for _, r := range res.Records {
				if r.Offset != off {
					t.Fatalf("%s: offset %d where %d was due", m.id, r.Offset, off)
				}
				got = append(got, string(r.Payload))
				off++
			}
		}
		one.Close()
		for i, p := range got {
			if p != fmt.Sprintf("m%d", i) {
				t.Fatalf("%s: offset %d holds %q", m.id, i, p)
			}
		}
	}
}
