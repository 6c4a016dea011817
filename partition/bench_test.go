package partition_test

import (
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
)

// BenchmarkLeaseSettle is the fetch-and-ack path of one consumer: Lease
// 1,000 messages of 128 bytes, then Release and Settle them, from a
// journal prefilled with 100,000 messages (read from the page cache).
// When the group has consumed everything, ResetGroup starts it over.
func BenchmarkLeaseSettle(b *testing.B) {
	const (
		prefill = 100_000
		perOp   = 1000
		size    = 128
	)
	p := open(b, journal.Options{})
	for range prefill / perOp {
		appendN(b, p, perOp, size)
	}
	if err := p.AddGroup("g", 0); err != nil {
		b.Fatal(err)
	}
	offs := make([]uint64, 0, perOp)
	now := t0
	b.SetBytes(perOp * size)
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		ds, err := p.Lease("g", now, 30*time.Second, perOp, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) == 0 {
			if err := p.ResetGroup("g", 0); err != nil {
				b.Fatal(err)
			}
			if ds, err = p.Lease("g", now, 30*time.Second, perOp, 0); err != nil {
				b.Fatal(err)
			}
		}
		if len(ds) != perOp {
			b.Fatalf("Lease returned %d messages, want %d", len(ds), perOp)
		}
		offs = offs[:0]
		for _, d := range ds {
			offs = append(offs, d.Offset)
		}
		if err := p.Release("g", offs); err != nil {
			b.Fatal(err)
		}
		if n, err := p.Settle("g", offs); err != nil || n != perOp {
			b.Fatalf("Settle = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N)*perOp/b.Elapsed().Seconds(), "msgs/s")
}
