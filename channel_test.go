package walmq_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/walmq/walmq"
)

type job struct {
	N    int    `json:"n"`
	Name string `json:"name"`
}

func TestChannelSendRecvAck(t *testing.T) { forEachEnv(t, testChannelSendRecvAck) }

func testChannelSendRecvAck(t *testing.T, openBroker opener) {
	for _, tc := range []struct {
		name string
		dur  walmq.Durability
	}{
		{"SyncPerSend", walmq.SyncPerSend},
		{"FlushOnly", walmq.FlushOnly},
		{"SyncEvery", walmq.SyncEvery(3, time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openBroker(t, t.TempDir(), walmq.Options{})
			defer b.Close()
			tx, rx, err := walmq.Unbounded(b, "jobs", walmq.ChannelOptions[job]{Durability: tc.dur})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				if err := tx.Send(job{N: i, Name: "j"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Sync(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				d, err := rx.RecvTimeout(5 * time.Second)
				if err != nil {
					t.Fatalf("recv %d: %v", i, err)
				}
				if d.Err != nil || d.Value.N != i || d.Value.Name != "j" {
					t.Fatalf("recv %d: %+v", i, d)
				}
				if err := d.Ack(); err != nil {
					t.Fatal(err)
				}
			}
			tx.Close()
			if _, err := rx.Recv(); !errors.Is(err, walmq.ErrDisconnected) {
				t.Fatalf("Recv after the last sender closed: %v", err)
			}
		})
	}
}

func TestChannelBoundedBlocks(t *testing.T) { forEachEnv(t, testChannelBoundedBlocks) }

func testChannelBoundedBlocks(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	tx, rx, err := walmq.Bounded(b, "c", 2, walmq.ChannelOptions[int]{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.Send(1); err != nil {
		t.Fatal(err)
	}
	if err := tx.TrySend(2); err != nil {
		t.Fatal(err)
	}
	if err := tx.TrySend(3); !errors.Is(err, walmq.ErrFull) {
		t.Fatalf("TrySend at the bound: %v", err)
	}
	start := time.Now()
	if err := tx.SendTimeout(3, 100*time.Millisecond); !errors.Is(err, walmq.ErrSendTimeout) {
		t.Fatalf("SendTimeout at the bound: %v", err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatalf("SendTimeout returned after %v", time.Since(start))
	}
	// A blocked Send goes through once the receiver acknowledges one.
	sent := make(chan error, 1)
	go func() { sent <- tx.Send(3) }()
	select {
	case err := <-sent:
		t.Fatalf("Send at the bound returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	d, err := rx.Recv()
	if err != nil || d.Value != 1 {
		t.Fatalf("Recv: %+v %v", d, err)
	}
	// Receiving is not acknowledging: still full.
	select {
	case err := <-sent:
		t.Fatalf("Send returned %v before the ack", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send still blocked after an ack")
	}
}

func TestChannelRecvTimeoutsAndTry(t *testing.T) { forEachEnv(t, testChannelRecvTimeoutsAndTry) }

func testChannelRecvTimeoutsAndTry(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	tx, rx, err := walmq.Unbounded(b, "c", walmq.ChannelOptions[string]{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := rx.TryRecv(); !errors.Is(err, walmq.ErrEmpty) {
		t.Fatalf("TryRecv on empty: %v", err)
	}
	start := time.Now()
	if _, err := rx.RecvTimeout(150 * time.Millisecond); !errors.Is(err, walmq.ErrRecvTimeout) {
		t.Fatalf("RecvTimeout: %v", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 10*time.Second {
		t.Fatalf("RecvTimeout took %v", el)
	}
	if _, err := rx.RecvDeadline(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, walmq.ErrRecvTimeout) {
		t.Fatalf("RecvDeadline: %v", err)
	}
	// A value sent while Recv waits is received.
	go func() {
		time.Sleep(100 * time.Millisecond)
		tx.Send("late")
	}()
	d, err := rx.RecvTimeout(5 * time.Second)
	if err != nil || d.Value != "late" {
		t.Fatalf("Recv of a late value: %+v %v", d, err)
	}
	d.Ack()
	for _, v := range []string{"a", "b", "c"} {
		tx.Send(v)
	}
	var got []string
	for d := range rx.TryIter() {
		got = append(got, d.Value)
		d.Ack()
	}
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("TryIter gave %v", got)
	}
}

func TestChannelDisconnect(t *testing.T) { forEachEnv(t, testChannelDisconnect) }

func testChannelDisconnect(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	tx, rx, err := walmq.Unbounded(b, "c", walmq.ChannelOptions[int]{})
	if err != nil {
		t.Fatal(err)
	}
	tx2 := tx.Clone()
	tx.Send(1)
	tx2.Send(2)
	tx.Close()
	if err := tx.Send(3); !errors.Is(err, walmq.ErrClosed) {
		t.Fatalf("Send on a closed sender: %v", err)
	}
	// One sender remains: Recv waits rather than disconnecting.
	var got []int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d, err := range rx.All() {
			if err != nil {
				t.Error(err)
				return
			}
			got = append(got, d.Value)
			d.Ack()
		}
	}()
	time.Sleep(150 * time.Millisecond)
	tx2.Send(4)
	tx2.Close()
	wg.Wait() // All ends once the channel is empty with no sender left
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 4 {
		t.Fatalf("received %v", got)
	}
	// With the receiver gone, a new sender's Send reports the disconnect.
	tx3, rx3, err := walmq.Unbounded(b, "d", walmq.ChannelOptions[int]{})
	if err != nil {
		t.Fatal(err)
	}
	rx3.Close()
	if err := tx3.Send(1); !errors.Is(err, walmq.ErrDisconnected) {
		t.Fatalf("Send with the receiver closed: %v", err)
	}
	tx3.Close()
}

func TestChannelDecodeErrorIsPerMessage(t *testing.T) {
	forEachEnv(t, testChannelDecodeErrorIsPerMessage)
}

func testChannelDecodeErrorIsPerMessage(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	tx, rx, err := walmq.Unbounded(b, "c", walmq.ChannelOptions[job]{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	tx.Send(job{N: 1})
	if _, err := b.Publish(ctxT(t), "c", walmq.Message{Payload: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	tx.Send(job{N: 2})
	var ns []int
	for i := 0; i < 3; i++ {
		d, err := rx.RecvTimeout(5 * time.Second)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if i == 1 {
			if !errors.Is(d.Err, walmq.ErrDecode) || d.Offset != 1 {
				t.Fatalf("bad message: %+v", d)
			}
		} else if d.Err != nil {
			t.Fatalf("good message %d: %v", i, d.Err)
		} else {
			ns = append(ns, d.Value.N)
		}
		d.Ack()
	}
	if len(ns) != 2 || ns[0] != 1 || ns[1] != 2 {
		t.Fatalf("values %v", ns)
	}
}

// TestChannelAtLeastOnceAcrossReopen: what was received but not
// acknowledged is received again by the next run, nothing acknowledged is.
func TestChannelAtLeastOnceAcrossReopen(t *testing.T) {
	forEachEnv(t, testChannelAtLeastOnceAcrossReopen)
}

func testChannelAtLeastOnceAcrossReopen(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	tx, rx, err := walmq.Bounded(b, "c", 10, walmq.ChannelOptions[int]{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		tx.Send(i)
	}
	for i := 0; i < 4; i++ {
		d, err := rx.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			d.Ack()
		}
	}
	tx.Close()
	rx.Close()
	b.Close()

	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	tx, rx, err = walmq.Bounded(b, "c", 10, walmq.ChannelOptions[int]{})
	if err != nil {
		t.Fatal(err)
	}
	// The bound counts the 4 left unacknowledged by the last run.
	for i := 0; i < 6; i++ {
		if err := tx.TrySend(100 + i); err != nil {
			t.Fatalf("TrySend %d: %v", i, err)
		}
	}
	if err := tx.TrySend(200); !errors.Is(err, walmq.ErrFull) {
		t.Fatalf("TrySend past the bound: %v", err)
	}
	tx.Close()
	var got []int
	for d, err := range rx.All() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Value)
		d.Ack()
	}
	want := []int{2, 3, 4, 5, 100, 101, 102, 103, 104, 105}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// TestChannelSyncNotStarvedByOtherSenders: Sync waits only for the sends
// made before it, while another clone keeps sending.
func TestChannelSyncNotStarvedByOtherSenders(t *testing.T) { forEachEnv(t, testChannelSyncNotStarved) }

func testChannelSyncNotStarved(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	tx, rx, err := walmq.Unbounded(b, "c", walmq.ChannelOptions[int]{Durability: walmq.FlushOnly, MaxUnsynced: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	busy := tx.Clone()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			busy.Send(i)
		}
	}()
	for i := 0; i < 20; i++ {
		tx.Send(-i)
		// Starved, Sync would never return: it waits only for the at most
		// MaxUnsynced sends queued before it.
		synced := make(chan error, 1)
		go func() { synced <- tx.Sync() }()
		select {
		case err := <-synced:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Sync did not return while another sender was busy")
		}
	}
	close(stop)
	<-done
	busy.Close()
	tx.Close()
}
