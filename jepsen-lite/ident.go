package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Telling which node opened a connection.
//
// Every node dials its peers at the addresses in the Raft configuration
// (and forwards client requests to the address the leader announced), and
// those addresses are the same for every node: nothing in what a node
// dials says who is dialing. All nodes run on 127.0.0.1, so the source
// address does not either. The harness therefore asks the kernel: the
// client end of an accepted loopback connection is a socket in
// /proc/net/tcp (local address = the accepted connection's remote
// address), whose inode is in the fd table of exactly one process. That is
// Linux-only, needs no privileges for processes of the same user, and
// costs a scan of a few hundred fds per accepted connection; Raft and gRPC
// keep their connections open, so there are few.

// errNoOwner: no candidate process holds the other end of the connection
// (it is already closed, or another process opened it).
var errNoOwner = errors.New("no known process owns the connection")

// connOwner returns the pid, among pids, of the process that opened c, a
// TCP connection accepted on an IPv4 address of this host.
func connOwner(c net.Conn, pids []int) (int, error) {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil || local.IP.To4() == nil {
		return 0, fmt.Errorf("not an IPv4 TCP connection: %v -> %v", c.RemoteAddr(), c.LocalAddr())
	}
	// The dialer's socket: its local address is our remote one.
	want := [2]string{procAddr(remote), procAddr(local)}
	var inode string
	for try := 0; ; try++ {
		var err error
		inode, err = socketInode("/proc/net/tcp", want)
		if err != nil {
			return 0, err
		}
		if inode != "" && inode != "0" {
			break
		}
		if try == 3 {
			return 0, fmt.Errorf("%w: no socket %s -> %s in /proc/net/tcp", errNoOwner, remote, local)
		}
		time.Sleep(2 * time.Millisecond)
	}
	link := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // exited
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && l == link {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: socket %s -> %s", errNoOwner, remote, local)
}

// procAddr formats an IPv4 address as /proc/net/tcp does: the address as
// a native-endian 32-bit word and the port, both in upper-case hex.
func procAddr(a *net.TCPAddr) string {
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a.IP.To4()), a.Port)
}

// socketInode returns the inode of the socket with local and remote
// addresses want (in procAddr's form) in the table at path, "" if none.
func socketInode(path string, want [2]string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == want[0] && fields[2] == want[1] {
			return fields[9], nil
		}
	}
	return "", sc.Err()
}
