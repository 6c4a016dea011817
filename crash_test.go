package walmq_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walmq/walmq"
)

const crashChildEnv = "WALMQ_TEST_CRASH_CHILD"

// crashChild publishes from 8 goroutines until killed, printing a line
// "partition offset payload" for every acknowledged message.
func crashChild(dir string) {
	b, err := walmq.Open(dir, walmq.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "load", walmq.TopicConfig{Partitions: 3}); err != nil && !errors.Is(err, walmq.ErrTopicExists) {
		fmt.Fprintln(os.Stderr, "create:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				msgs := make([]walmq.Message, 10)
				for k := range msgs {
					p := fmt.Sprintf("w%d-%d", g, seq*10+k)
					msgs[k] = walmq.Message{Key: []byte(p), Payload: []byte(p)}
				}
				acks, err := b.Publish(ctx, "load", msgs...)
				if err != nil {
					fmt.Fprintln(os.Stderr, "publish:", err)
					os.Exit(2)
				}
				mu.Lock()
				for k, a := range acks {
					fmt.Fprintf(out, "%d %d %s\n", a.Partition, a.Offset, msgs[k].Payload)
				}
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSIGKILLDuringLoad kills a publishing process with SIGKILL, twice,
// and checks that every publish it printed as acknowledged is delivered
// after a restart, at the offset its ack gave, in order per partition.
func TestSIGKILLDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	acked := map[int]map[uint64]string{}
	total := 0
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		deadline := time.Now().Add(30 * time.Second)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			p, _ := strconv.Atoi(f[0])
			off, _ := strconv.ParseUint(f[1], 10, 64)
			if acked[p] == nil {
				acked[p] = map[uint64]string{}
			}
			if prev, ok := acked[p][off]; ok && prev != f[2] {
				t.Fatalf("offset %d/%d acked for %s and for %s", p, off, prev, f[2])
			}
			acked[p][off] = f[2]
			n++
			if n == 3000 || time.Now().After(deadline) {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Lines printed before the kill landed are acknowledged too.
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 {
				p, _ := strconv.Atoi(f[0])
				off, _ := strconv.ParseUint(f[1], 10, 64)
				acked[p][off] = f[2]
				n++
			}
		}
		cmd.Wait()
		if n < 3000 {
			t.Fatalf("round %d: only %d acks before the deadline", round, n)
		}
		total += n
	}
	b := openBroker(t, dir, walmq.Options{})
	defer b.Close()
	got := map[int][]walmq.Delivery{}
	for {
		ds, err := b.Fetch(ctxT(t), "verify", "load", 1000, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			got[d.Partition] = append(got[d.Partition], d)
		}
	}
	lost := 0
	for p, offs := range acked {
		byOff := map[uint64]string{}
		var prev uint64
		for i, d := range got[p] {
			if i > 0 && d.Offset <= prev {
				t.Fatalf("partition %d delivered offset %d after %d", p, d.Offset, prev)
			}
			prev = d.Offset
			byOff[d.Offset] = string(d.Payload)
		}
		for off, payload := range offs {
			if byOff[off] != payload {
				lost++
				if lost < 10 {
					t.Errorf("acked %s at %d/%d, delivered %q", payload, p, off, byOff[off])
				}
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", lost, total)
	}
	t.Logf("%d acknowledged messages over two SIGKILLs, all delivered in order", total)
}
