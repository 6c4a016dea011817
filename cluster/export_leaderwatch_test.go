package cluster

// LeaderWatchers counts the node's WatchLeader subscriptions.
func (n *Node) LeaderWatchers() int {
	n.leaderWatch.mu.Lock()
	defer n.leaderWatch.mu.Unlock()
	return len(n.leaderWatch.ws)
}
