package fsm_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

// BenchmarkSnapshot takes a snapshot (fsm.Snapshot, what runs on Raft's
// apply goroutine, then Release) of a partition holding the given data in
// 4 MiB segments: its cost is a hard link per segment, not a copy, so it
// grows with the number of segments and not with their bytes.
func BenchmarkSnapshot(b *testing.B) {
	for _, mib := range []int{16, 256} {
		b.Run(fmt.Sprintf("retained=%dMiB", mib), func(b *testing.B) {
			f, err := fsm.New(fsm.Options{Dir: filepath.Join(b.TempDir(), "topics"), Journal: journal.Options{SegmentBytes: 4 << 20}})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			index := uint64(1)
			apply := func(cmd any) {
				data, err := fsm.Encode(cmd)
				if err != nil {
					b.Fatal(err)
				}
				if res, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(error); ok {
					b.Fatal(res)
				}
				index++
			}
			apply(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
			msgs := make([]journal.Message, 1024)
			for i := range msgs {
				msgs[i].Payload = make([]byte, 1000)
			}
			for range mib {
				apply(&fsm.Publish{Topic: "t", Messages: msgs, Timestamp: 1})
			}
			p, _ := f.Partition("t", 0)
			b.ReportMetric(float64(len(p.Journal().Segments())), "segments")
			for b.Loop() {
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
	}
}
