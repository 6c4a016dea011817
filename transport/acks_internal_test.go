package transport

import (
	"testing"

	pb "github.com/walmq/walmq/api/walmq/v1"
)

func TestAcksOut(t *testing.T) {
	parts := []int{0, 0, 0, 1, 1, 0}
	offs := []uint64{5, 6, 7, 2, 3, 9}
	none := make([]bool, 6)

	// Ranges: consecutive offsets of one partition merge, in message order.
	r := acksOut(&pb.PublishRequest{AckRanges: true}, parts, offs, none)
	want := []struct {
		p     int32
		first uint64
		n     uint32
	}{{0, 5, 3}, {1, 2, 2}, {0, 9, 1}}
	if len(r.GetAcks()) != 0 || len(r.GetRanges()) != len(want) {
		t.Fatalf("ranges %v, acks %v", r.GetRanges(), r.GetAcks())
	}
	for i, w := range want {
		g := r.GetRanges()[i]
		if g.GetPartition() != w.p || g.GetFirstOffset() != w.first || g.GetCount() != w.n {
			t.Fatalf("range %d: %v, want %+v", i, g, w)
		}
	}
	// A duplicate, or a client that did not ask: one ack per message.
	dups := []bool{false, true, false, false, false, false}
	for _, tc := range []struct {
		req  *pb.PublishRequest
		dups []bool
	}{{&pb.PublishRequest{AckRanges: true}, dups}, {&pb.PublishRequest{}, none}} {
		r := acksOut(tc.req, parts, offs, tc.dups)
		if len(r.GetRanges()) != 0 || len(r.GetAcks()) != 6 {
			t.Fatalf("ranges %v, acks %v", r.GetRanges(), r.GetAcks())
		}
		for i, a := range r.GetAcks() {
			if int(a.GetPartition()) != parts[i] || a.GetOffset() != offs[i] || a.GetDuplicate() != tc.dups[i] {
				t.Fatalf("ack %d: %v", i, a)
			}
		}
	}
}
