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

// StallLogWrites holds the writes this node queues while it leads until
// release is called.
func (n *Node) StallLogWrites() (release func()) {
	gate := make(chan struct{})
	f := func() { <-gate }
	n.wlog.beforeWrite.Store(&f)
	var once sync.Once
	return func() {
		once.Do(func() {
			n.wlog.beforeWrite.Store(nil)
			close(gate)
		})
	}
}
