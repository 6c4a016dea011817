// Package freeport picks TCP ports on 127.0.0.1 for servers that tests and
// the fault harness start and must name before they bind (a Raft address
// that goes into every member's --peers, a port a child process listens
// on).
//
// Asking the kernel for port 0 and closing the listener is not enough: the
// port comes from the ephemeral range, where any process's outgoing
// connection can take it before the server binds it, and on a machine
// running many tests at once one sometimes does. Addr takes ports outside
// that range instead, where the kernel never hands a port out by itself,
// hands each port out once per process, and starts each process's search
// at its own place, so that two processes seldom try the same ports.
// Whoever binds a port Addr gave may still find it taken (by another
// process that picked it too): retry with a new one where that matters.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu     sync.Mutex
	given  = map[int]bool{}
	rng    = rand.New(rand.NewPCG(uint64(os.Getpid()), rand.Uint64()))
	lo, hi = Range()
)

// Addr returns "127.0.0.1:PORT" for a port that was free a moment ago and
// that this process was not given before.
func Addr() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	var err error
	for range 200 {
		port := lo + rng.IntN(hi-lo)
		if given[port] {
			continue
		}
		given[port] = true
		var ln net.Listener
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return ln.Addr().String(), nil
		}
	}
	return "", fmt.Errorf("freeport: no free port in [%d, %d): %w", lo, hi, err)
}

// Range is the widest range of ports within [10000, 65536) outside the
// kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
// 32768-60999 when it cannot be read), or [10000, 65536) when no range of
// 1,000 ports is left outside it.
func Range() (lo, hi int) {
	elo, ehi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, errA := strconv.Atoi(f[0])
			b, errB := strconv.Atoi(f[1])
			if errA == nil && errB == nil && a <= b {
				elo, ehi = a, b
			}
		}
	}
	below := [2]int{10000, min(elo, 65536)}
	above := [2]int{max(ehi+1, 10000), 65536}
	switch {
	case below[1]-below[0] >= above[1]-above[0] && below[1]-below[0] >= 1000:
		return below[0], below[1]
	case above[1]-above[0] >= 1000:
		return above[0], above[1]
	}
	return 10000, 65536
}
