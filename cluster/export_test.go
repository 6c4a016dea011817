package cluster

import "sync"

// FirstLogIndex is the first index of the node's Raft log.
func (n *Node) FirstLogIndex() uint64 {
	i, err := n.bolt.FirstIndex()
	if err != nil {
		return 0
	}
	return i
}

// FailLogWrites makes every write this node queues while it leads fail
// with err, as a disk error would.
func (n *Node) FailLogWrites(err error) {
	f := func() error { return err }
	n.wlog.beforeWrite.Store(&f)
}

// StallLogWrites holds the writes this node queues while it leads until
// release is called.
func (n *Node) StallLogWrites() (release func()) {
	gate := make(chan struct{})
	f := func() error { <-gate; return nil }
	n.wlog.beforeWrite.Store(&f)
	var once sync.Once
	return func() {
		once.Do(func() {
			n.wlog.beforeWrite.Store(nil)
			close(gate)
		})
	}
}
