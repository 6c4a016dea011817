package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/walmq/walmq/cmd/internal/proctest"
)

// TestPubNodeKilled kills the node with SIGKILL while walmq pub --acks
// streams into it: every message pub printed as acknowledged must be
// there, where the ack said, once the node is restarted.
func TestPubNodeKilled(t *testing.T) {
	const (
		nLines    = 200000
		killAfter = 5000 // ack lines
	)
	n := startNode(t, "")
	mustCLI(t, n.Addr, "", "topic", "create", "k", "--partitions", "2")

	pub := exec.Command(walmqBin, "--server", n.Addr, "pub", "k", "--acks")
	pub.Env = proctest.Env()
	stdin, err := pub.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := pub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	pub.Stderr = &stderr
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stdin.Close()
		w := bufio.NewWriter(stdin)
		for i := range nLines {
			if _, err := fmt.Fprintf(w, "m-%06d\n", i); err != nil {
				return // pub stopped reading and exited
			}
		}
		w.Flush()
	}()

	var acked []string
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if !killed && len(acked) >= killAfter {
			n.Kill(t)
			killed = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = pub.Wait()
	wg.Wait()
	if !killed {
		t.Fatalf("pub printed only %d acks before it ended (%v): %s", len(acked), err, stderr.String())
	}
	if pub.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "publishes failed") {
		t.Fatalf("pub after the node was killed: exit %d, stderr %q; want exit 1 and a count of failed publishes",
			pub.ProcessState.ExitCode(), stderr.String())
	}
	acks := parseAcks(t, strings.Join(acked, "\n"))
	t.Logf("%d acks printed before and after the kill; pub said: %s", len(acks), strings.TrimSpace(stderr.String()))

	// Restart on the same data directory and socket (which the killed node
	// left behind) and read everything back.
	m := n.restart(t)
	msgs := parseJSON(t, mustCLI(t, "unix://"+m.socket, "", "sub", "k", "--group", "verify", "--wait", "3s", "--json"))
	stored := map[string]jsonMsg{}
	for _, msg := range msgs {
		if _, dup := stored[msg.Payload]; dup {
			t.Fatalf("%q stored twice", msg.Payload)
		}
		stored[msg.Payload] = msg
	}
	for _, a := range acks {
		msg, ok := stored[a.payload]
		if !ok {
			t.Fatalf("%q was acknowledged at %d/%d and is lost (%d acked, %d stored)", a.payload, a.partition, a.offset, len(acks), len(stored))
		}
		if msg.Partition != a.partition || msg.Offset != a.offset {
			t.Fatalf("%q was acknowledged at %d/%d and is stored at %d/%d", a.payload, a.partition, a.offset, msg.Partition, msg.Offset)
		}
	}
	t.Logf("%d messages stored, %d of them acknowledged", len(stored), len(acks))
}
