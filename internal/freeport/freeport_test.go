package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrIsFreeUniqueAndOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := Range()
	if hi-lo < 1000 {
		t.Fatalf("range [%d, %d) is too small", lo, hi)
	}
	seen := map[string]bool{}
	for range 50 {
		a, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lo, hi)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is not free: %v", a, err)
		}
		ln.Close()
	}
}
