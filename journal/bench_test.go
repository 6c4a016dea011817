package journal_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/walmq/walmq/journal"
)

const (
	benchMsgSize  = 128
	benchBatchLen = 1000
)

// BenchmarkAppendSync appends batches of 1,000 messages of 128 bytes with
// one sync per batch, beside a raw baseline that writes the same payload
// bytes sequentially to one file with the same sync (fdatasync) per 1,000
// messages. Both report payload bytes per second, so the ratio is the
// journal's efficiency against the disk.
func BenchmarkAppendSync(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		f, err := journal.OSFS{}.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, benchMsgSize*benchBatchLen)
		for i := range buf {
			buf[i] = byte(i)
		}
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		var pos int64
		for b.Loop() {
			if _, err := f.WriteAt(buf, pos); err != nil {
				b.Fatal(err)
			}
			pos += int64(len(buf))
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		reportMsgs(b, benchBatchLen)
	})
	b.Run("journal", func(b *testing.B) {
		j, err := journal.Open(b.TempDir(), journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		batch := journal.Batch{Messages: make([]journal.Message, benchBatchLen)}
		for i := range batch.Messages {
			batch.Messages[i].Payload = payload(uint64(i), benchMsgSize)
		}
		b.SetBytes(benchMsgSize * benchBatchLen)
		b.ResetTimer()
		for b.Loop() {
			batch.RaftIndex++
			batch.Timestamp = time.Now().UnixNano()
			if _, err := j.Append(batch); err != nil {
				b.Fatal(err)
			}
			if err := j.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		reportMsgs(b, benchBatchLen)
	})
}

func reportMsgs(b *testing.B, perOp int) {
	b.ReportMetric(float64(b.N)*float64(perOp)/b.Elapsed().Seconds(), "msgs/s")
}

var bench struct {
	once sync.Once
	root string
	err  error
}

// benchJournal returns a directory holding a journal of the given size,
// built once per test binary and shared by the benchmarks.
func benchJournal(b *testing.B, name string, msgs int, segBytes int64) string {
	bench.once.Do(func() { bench.root, bench.err = os.MkdirTemp("", "walmq-journal-bench-") })
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	dir := filepath.Join(bench.root, name)
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	j, err := journal.Open(dir, journal.Options{SegmentBytes: segBytes})
	if err != nil {
		b.Fatal(err)
	}
	batch := journal.Batch{Messages: make([]journal.Message, benchBatchLen)}
	for i := range batch.Messages {
		batch.Messages[i].Payload = payload(uint64(i), benchMsgSize)
	}
	for j.NextOffset() < uint64(msgs) {
		batch.RaftIndex++
		batch.Timestamp = time.Now().UnixNano()
		if _, err := j.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

func removeBenchJournals() {
	if bench.root != "" {
		os.RemoveAll(bench.root)
	}
}

// BenchmarkRead reads 128-byte messages sequentially, 1,000 per call,
// from a journal of 500,000 (wrapping around at the end). One op is one
// message.
func BenchmarkRead(b *testing.B) {
	const total = 500_000
	dir := benchJournal(b, "read", total, journal.DefaultSegmentBytes)
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	b.SetBytes(benchMsgSize)
	b.ResetTimer()
	var next uint64
	for n := 0; n < b.N; {
		msgs, err := j.Read(next, min(benchBatchLen, b.N-n), 0)
		if err != nil {
			b.Fatal(err)
		}
		n += len(msgs)
		next += uint64(len(msgs))
		if next >= total {
			next = 0
		}
	}
	reportMsgs(b, 1)
}

// BenchmarkOpen opens (and closes, untimed) a journal of 1 GiB in 16
// segments of 64 MiB.
func BenchmarkOpen(b *testing.B) {
	// 134 bytes a message with framing, 500 batches of 1,000 fill a 64 MiB
	// segment: 8,000 batches make 16 full segments, 1,023 MiB.
	const msgs = 8_000_000
	dir := benchJournal(b, "open-1GiB", msgs, 64<<20)
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	segs := j.Segments()
	var bytes int64
	for _, s := range segs {
		bytes += s.Size
	}
	j.Close()
	if len(segs) != 16 || bytes < 1000<<20 {
		b.Fatalf("bench journal has %d segments and %d bytes, want 16 and about 1 GiB", len(segs), bytes)
	}
	b.ResetTimer()
	for b.Loop() {
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(bytes)/(1<<20), "MiB")
	b.ReportMetric(float64(len(segs)), "segments")
}
