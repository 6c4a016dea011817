package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/transport"
)

// readRecords calls ReadRecords and collects the records.
func readRecords(ctx context.Context, api pb.WalmqClient, from, to uint64) ([][]byte, error) {
	st, err := api.ReadRecords(ctx, &pb.ReadRecordsRequest{Topic: "t", From: from, To: to})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.GetRecords()...)
	}
}

// TestReadRecordsNeverShipsDamage serves a node whose sealed segment gets
// a flipped bit: ReadRecords streams exactly the journal's records up to
// the damage and answers DataLoss for a range that reaches it, and the
// node's status lists the damaged segment.
func TestReadRecordsNeverShipsDamage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := cluster.Open(ctx, cluster.Config{Dir: t.TempDir(), Journal: journal.Options{SegmentBytes: 4 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	srv, err := transport.NewServer(node, transport.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		srv.Stop(context.Background())
		<-served
	}()
	conn, err := grpc.NewClient("passthrough:///"+srv.TCPAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := pb.NewWalmqClient(conn)

	if _, err := node.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	for b := range 40 {
		var msgs []journal.Message
		for i := range 10 {
			msgs = append(msgs, journal.Message{Payload: []byte(fmt.Sprintf("batch %d message %d ..........", b, i))})
		}
		if _, err := node.Publish(ctx, "t", 0, msgs); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := node.FSM().Partition("t", 0)
	segs := p.Journal().Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	var want [][]byte
	if err := node.ReadRecords(ctx, "t", 0, 0, segs[1].NextOffset, func(rec []byte) error {
		want = append(want, bytes.Clone(rec))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := readRecords(ctx, api, 0, segs[1].NextOffset)
	if err != nil || len(got) != len(want) {
		t.Fatalf("ReadRecords: %d records, %v; want %d", len(got), err, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}

	// A bit flipped in the first record of the second segment.
	f, err := os.OpenFile(segs[1].Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 70)
	b[0] ^= 0x02
	f.WriteAt(b, 70)
	f.Close()

	if got, err := readRecords(ctx, api, 0, segs[1].BaseOffset); err != nil || len(got) == 0 {
		t.Fatalf("ReadRecords before the damage: %d records, %v", len(got), err)
	}
	_, err = readRecords(ctx, api, 0, segs[2].BaseOffset)
	if status.Code(err) != codes.DataLoss || !errors.Is(transport.FromStatus(err), journal.ErrCorrupt) {
		t.Fatalf("ReadRecords over the damage: %v, want DataLoss", err)
	}
	st, err := api.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := st.GetDamagedSegments(); len(d) != 1 || d[0].GetTopic() != "t" || d[0].GetSegment() != segs[1].Path ||
		d[0].GetPosition() != 0 || d[0].GetFirstOffset() != segs[1].BaseOffset || d[0].GetNextOffset() != segs[1].NextOffset {
		t.Fatalf("status lists damaged segments %v", d)
	}
	if st.GetSegmentsRepaired() != 0 {
		t.Fatalf("a single node repaired %d segments", st.GetSegmentsRepaired())
	}
}
