package cluster

import "sync"

// leaderWatchers are the subscriptions of WatchLeader. Each one is a
// channel with room for one signal: a change signals every watcher without
// blocking (a watcher that has not taken the last signal yet has nothing
// more to learn from a second one: it reads the current leader anyway).
type leaderWatchers struct {
	mu sync.Mutex
	ws map[chan struct{}]struct{}
}

// WatchLeader subscribes to the changes of the leader this node observes
// (a new leader, or none known): the channel receives a signal after each
// change; the leader itself is read with LeaderClientAddr once signalled
// (several changes in a row may leave one signal). A change that happened
// before WatchLeader returned may or may not be signalled, so a watcher
// reads the leader after subscribing. stop ends the subscription; it
// starts no goroutine and may be called more than once.
func (n *Node) WatchLeader() (changed <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	w := &n.leaderWatch
	w.mu.Lock()
	if w.ws == nil {
		w.ws = map[chan struct{}]struct{}{}
	}
	w.ws[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.ws, ch)
		w.mu.Unlock()
	}
}

// leaderChanged signals every watcher; it never blocks.
func (w *leaderWatchers) leaderChanged() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.ws {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
