package cluster

// FirstLogIndex is the first index of the node's Raft log.
func (n *Node) FirstLogIndex() uint64 {
	i, err := n.bolt.FirstIndex()
	if err != nil {
		return 0
	}
	return i
}
