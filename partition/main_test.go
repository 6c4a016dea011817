package partition_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the time tests pass to Lease and Nack.
var t0 = time.Unix(1_000_000, 0)

// open opens a partition in a temporary directory, closed at cleanup.
func open(t testing.TB, opts journal.Options) *partition.Partition {
	t.Helper()
	p, err := partition.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// appendN appends one batch of n messages through the partition. Each
// message's payload is its offset in decimal, padded with '.' to size
// bytes when size is larger.
func appendN(t testing.TB, p *partition.Partition, n, size int) {
	t.Helper()
	if _, err := p.Append(batch(p.Journal(), n, size)); err != nil {
		t.Fatal(err)
	}
}

// batch builds the next batch of n messages for j.
func batch(j *journal.Journal, n, size int) journal.Batch {
	next := j.NextOffset()
	msgs := make([]journal.Message, n)
	for i := range msgs {
		b := []byte(strconv.FormatUint(next+uint64(i), 10))
		for len(b) < size {
			b = append(b, '.')
		}
		msgs[i].Payload = b
	}
	return journal.Batch{RaftIndex: j.LastRaftIndex() + 1, Timestamp: t0.UnixNano(), Messages: msgs}
}

// checkPayload fails unless m carries the payload appendN gave its offset.
func checkPayload(t testing.TB, m journal.Message) {
	t.Helper()
	want := strconv.FormatUint(m.Offset, 10)
	if len(m.Payload) < len(want) || string(m.Payload[:len(want)]) != want ||
		(len(m.Payload) > len(want) && m.Payload[len(want)] != '.') {
		t.Fatalf("message at offset %d has payload %q", m.Offset, m.Payload)
	}
}

// lease calls Lease and returns "offset/deliveries" strings.
func lease(t testing.TB, p *partition.Partition, group string, now time.Time, ackWait time.Duration, maxMsgs, maxBytes int) []string {
	t.Helper()
	ds, err := p.Lease(group, now, ackWait, maxMsgs, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, d := range ds {
		checkPayload(t, d.Message)
		out = append(out, fmt.Sprintf("%d/%d", d.Offset, d.Deliveries))
	}
	return out
}

// span returns "o/d" for offsets lo..hi-1 with deliveries d.
func span(lo, hi uint64, d int) []string {
	out := []string{}
	for o := lo; o < hi; o++ {
		out = append(out, fmt.Sprintf("%d/%d", o, d))
	}
	return out
}

func cat(parts ...[]string) []string {
	out := []string{}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func offsets(lo, hi uint64) []uint64 {
	var out []uint64
	for o := lo; o < hi; o++ {
		out = append(out, o)
	}
	return out
}
