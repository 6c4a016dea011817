package walmq_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walmq/walmq"
)

const benchSize = 128

func benchPayload() []byte {
	p := make([]byte, benchSize)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

func reportRate(b *testing.B, n int64) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublish: 16 concurrent publishers, each keeping 64 publishes of
// one 128-byte message in flight (producer p publishes to partition
// p mod partitions); a publish is acknowledged only once its Raft entry is
// fsynced and applied. One op is one message.
func BenchmarkPublish(b *testing.B) {
	for _, parts := range []int{1, 4} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			br := openBroker(b, b.TempDir(), walmq.Options{})
			defer br.Close()
			mustCreate(b, br, "bench", walmq.TopicConfig{Partitions: parts})
			const producers, window = 16, 64
			payload := benchPayload()
			var next atomic.Int64
			var failed atomic.Int64
			b.SetBytes(benchSize)
			b.ResetTimer()
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem := make(chan struct{}, window)
					part := p % parts
					for next.Add(1) <= int64(b.N) {
						sem <- struct{}{}
						err := br.PublishAsync(context.Background(), "bench", part, []walmq.Message{{Payload: payload}},
							func(_ []walmq.PublishAck, err error) {
								if err != nil {
									failed.Add(1)
								}
								<-sem
							})
						if err != nil {
							b.Error(err)
							return
						}
					}
					for range window {
						sem <- struct{}{}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d publishes failed", failed.Load())
			}
			reportRate(b, int64(b.N))
		})
	}
}

// BenchmarkChannelSend: one sender sending 128-byte values through a
// channel in each durability mode. One op is one Send.
func BenchmarkChannelSend(b *testing.B) {
	for _, mode := range []struct {
		name string
		d    walmq.Durability
	}{{"SyncPerSend", walmq.SyncPerSend}, {"FlushOnly", walmq.FlushOnly}} {
		b.Run(mode.name, func(b *testing.B) {
			br := openBroker(b, b.TempDir(), walmq.Options{})
			defer br.Close()
			tx, rx, err := walmq.Unbounded(br, "c", walmq.ChannelOptions[[]byte]{Codec: walmq.BytesCodec{}, Durability: mode.d})
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			payload := benchPayload()
			b.SetBytes(benchSize)
			b.ResetTimer()
			for b.Loop() {
				if err := tx.Send(payload); err != nil {
					b.Fatal(err)
				}
			}
			// The weaker mode's figure includes waiting for every send to
			// be committed.
			if err := tx.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportRate(b, int64(b.N))
		})
	}
}

// prefill publishes n 128-byte messages to one partition in batches.
func prefill(b *testing.B, br walmq.Broker, topic string, n int) {
	payload := benchPayload()
	batch := make([]walmq.Message, 1000)
	for i := range batch {
		batch[i] = walmq.Message{Payload: payload}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var left atomic.Int64
	left.Store(int64(n))
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := left.Add(-1000)
				if k <= -1000 {
					return
				}
				m := batch
				if k < 0 {
					m = batch[:1000+k]
				}
				if _, err := br.PublishTo(context.Background(), topic, 0, m...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkFetchAck: one consumer of one group fetching 1,000 messages at a
// time and acking each, acks committed in batches. One op is one message.
func BenchmarkFetchAck(b *testing.B) {
	br := openBroker(b, b.TempDir(), walmq.Options{})
	defer br.Close()
	mustCreate(b, br, "bench", walmq.TopicConfig{})
	prefill(b, br, "bench", b.N)
	ctx := context.Background()
	b.SetBytes(benchSize)
	b.ResetTimer()
	got := 0
	for got < b.N {
		ds, err := br.Fetch(ctx, "g", "bench", 1000, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) == 0 {
			b.Fatalf("fetch returned nothing after %d of %d", got, b.N)
		}
		refs := make([]walmq.Ref, len(ds))
		for i := range ds {
			refs[i] = ds[i].Ref
		}
		if err := br.Ack(ctx, refs...); err != nil {
			b.Fatal(err)
		}
		got += len(ds)
	}
	if err := br.CommitAcks(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportRate(b, int64(got))
}

var reopenDir struct {
	once sync.Once
	dir  string
	err  error
}

// BenchmarkReopen: Open of a broker holding 1 GiB of 128-byte messages
// (8.4 million, in one topic of 4 partitions), closed cleanly before.
// Close is not timed.
func BenchmarkReopen(b *testing.B) {
	reopenDir.once.Do(func() {
		reopenDir.dir, reopenDir.err = os.MkdirTemp("", "walmq-bench-reopen-")
		if reopenDir.err != nil {
			return
		}
		br, err := walmq.Open(reopenDir.dir, walmq.Options{})
		if err != nil {
			reopenDir.err = err
			return
		}
		defer br.Close()
		if err := br.CreateTopic(context.Background(), "big", walmq.TopicConfig{Partitions: 1}); err != nil {
			reopenDir.err = err
			return
		}
		prefill(b, br, "big", (1<<30)/benchSize)
	})
	if reopenDir.err != nil {
		b.Fatal(reopenDir.err)
	}
	var bytes int64
	filepath.Walk(filepath.Join(reopenDir.dir, "topics"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			bytes += fi.Size()
		}
		return nil
	})
	b.ResetTimer()
	for b.Loop() {
		br, err := walmq.Open(reopenDir.dir, walmq.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(bytes)/(1<<30), "GiB")
}
