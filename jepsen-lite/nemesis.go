package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"
)

// The faults the nemesis knows.
var allFaults = []string{"partition-leader", "partition-follower", "partition-bridge", "partition-one-way",
	"partition-clients-leader", "kill-leader", "kill-follower", "kill-all", "pause-leader", "pause-follower",
	"slow-network", "lossy-network", "pause-then-kill-leader", "partition-then-kill-leader", "lose-tail", "flip-bit"}

// parseFaults checks a comma-separated list of faults.
func parseFaults(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		known := false
		for _, k := range allFaults {
			known = known || k == f
		}
		if !known {
			return nil, fmt.Errorf("unknown fault %q (known: %s)", f, strings.Join(allFaults, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// nemesis injects one fault at a time on a schedule drawn from its seeded
// random source: a quiet spell of 1 to 3 s, a fault on the leader or a
// follower (found when the fault starts) for minHold to maxHold, its
// repair, again.
type nemesis struct {
	c      *Cluster
	hist   *History
	rng    *rand.Rand
	faults []string
	// maxHold is the longest a fault lasts (at least minHold).
	maxHold time.Duration
	logf    func(string, ...any)
}

// minHold is the shortest a fault lasts: well above the election timeout
// (500 ms), so that a lost or paused leader is replaced.
const minHold = 2 * time.Second

// run injects faults until ctx is done or end has passed; the last fault
// is repaired before it returns.
func (n *nemesis) run(ctx context.Context, end time.Time) {
	if len(n.faults) == 0 {
		return
	}
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	for {
		quiet := time.Second + time.Duration(n.rng.Int63n(int64(2*time.Second)))
		fault := n.faults[n.rng.Intn(len(n.faults))]
		hold := minHold + time.Duration(n.rng.Int63n(int64(n.maxHold-minHold)+1))
		pick := n.rng.Intn(1 << 30) // which follower, for the follower faults
		if time.Now().Add(quiet).After(end) {
			return
		}
		sleep(quiet)
		if ctx.Err() != nil {
			return
		}
		repair := n.inject(ctx, fault, pick, hold)
		if repair == nil {
			continue
		}
		sleep(hold)
		repair()
	}
}

// inject starts fault and returns what repairs it (nil if it could not be
// started).
func (n *nemesis) inject(ctx context.Context, fault string, pick int, hold time.Duration) (repair func()) {
	n.hist.Add(Op{Process: "nemesis", Type: Invoke, F: fault})
	leader := n.c.WaitLeader(ctx, 5*time.Second)
	if leader == "" {
		n.done(fault, "", Info, "", "no leader found")
		return nil
	}
	target := leader
	if strings.HasSuffix(fault, "-follower") {
		target = n.follower(leader, pick)
	}
	half := func() {
		select {
		case <-time.After(hold / 2):
		case <-ctx.Done():
		}
	}
	switch {
	case fault == "pause-then-kill-leader":
		// Paused long enough to be replaced, then killed while paused, then
		// restarted: its unsent and unapplied work is gone.
		if err := n.c.Pause(leader); err != nil {
			n.done(fault, leader, Info, "", err.Error())
			return nil
		}
		n.done(fault, leader, OK, "paused "+leader+" (leader)", "")
		half()
		n.hist.Add(Op{Process: "nemesis", Node: leader, Type: Invoke, F: "kill"})
		if err := n.c.KillPaused(leader); err != nil {
			n.done("kill", leader, Info, "", err.Error())
			return func() { n.repair("resume", leader, "resumed "+leader, func() error { return n.c.Resume(leader) }) }
		}
		n.done("kill", leader, OK, "killed "+leader+" while paused", "")
		return func() { n.repair("restart", leader, "restarted "+leader, func() error { return n.c.Restart(leader) }) }
	case fault == "partition-then-kill-leader":
		// Cut off long enough for the others to elect a leader, then killed,
		// then restarted with its links healed.
		n.c.net.Isolate(leader)
		n.done(fault, leader, OK, "isolated "+leader+" (leader)", "")
		half()
		n.hist.Add(Op{Process: "nemesis", Node: leader, Type: Invoke, F: "kill"})
		if err := n.c.Kill(leader); err != nil {
			n.done("kill", leader, Info, "", err.Error())
			return func() { n.repair("heal", leader, "healed all links", func() error { n.c.net.HealAll(); return nil }) }
		}
		n.done("kill", leader, OK, "killed "+leader+" while cut off", "")
		return func() {
			n.repair("heal", leader, "healed all links", func() error { n.c.net.HealAll(); return nil })
			n.repair("restart", leader, "restarted "+leader, func() error { return n.c.Restart(leader) })
		}
	case fault == "kill-all":
		// Every node at once, as a power cut would: each restarts from what
		// its disk holds.
		var down []string
		for _, id := range n.c.IDs() {
			if n.c.State(id) == running && n.c.Kill(id) == nil {
				down = append(down, id)
			}
		}
		if len(down) == 0 {
			n.done(fault, "", Info, "", "no node could be killed")
			return nil
		}
		n.done(fault, "", OK, "killed "+strings.Join(down, ", "), "")
		return func() {
			for _, id := range down {
				n.repair("restart", id, "restarted "+id, func() error { return n.c.Restart(id) })
			}
		}
	case fault == "lose-tail":
		// A node (any: pick) killed, then its journals lose what they do not
		// guarantee to hold (see disk.go), as after a power cut.
		target = n.c.IDs()[pick%len(n.c.IDs())]
		if err := n.c.Kill(target); err != nil {
			n.done(fault, target, Info, "", err.Error())
			return nil
		}
		n.done(fault, target, OK, "killed "+target+" (leader "+leader+")", "")
		n.hist.Add(Op{Process: "nemesis", Node: target, Type: Invoke, F: "lose-unsynced"})
		if what, err := loseUnsyncedTails(n.c.DataDir(target), n.rng); err != nil {
			n.done("lose-unsynced", target, Info, what, err.Error())
		} else {
			n.done("lose-unsynced", target, OK, what, "")
		}
		return func() { n.repair("restart", target, "restarted "+target, func() error { return n.c.Restart(target) }) }
	case fault == "flip-bit":
		// A follower (a minority) stopped, a bit of one of its sealed
		// segments flipped, then restarted: it must find the damage and
		// repair the segment from its peers (or refuse it), never serve it.
		target = n.follower(leader, pick)
		if err := n.c.Kill(target); err != nil {
			n.done(fault, target, Info, "", err.Error())
			return nil
		}
		n.done(fault, target, OK, "killed "+target+" (leader "+leader+")", "")
		n.hist.Add(Op{Process: "nemesis", Node: target, Type: Invoke, F: "flip"})
		what, err := flipSealedBit(n.c.DataDir(target), n.rng)
		flipped := err == nil
		switch {
		case errors.Is(err, errNoSealedSegment):
			n.done("flip", target, Fail, "", err.Error())
		case err != nil:
			n.done("flip", target, Info, "", err.Error())
		default:
			n.done("flip", target, OK, what, "")
		}
		return func() {
			restarted := n.repair("restart", target, "restarted "+target, func() error { return n.c.Restart(target) })
			if flipped && restarted {
				n.awaitRepair(ctx, target)
			}
		}
	case fault == "partition-clients-leader":
		// The clients cannot reach the leader (their connections to it hang);
		// the nodes still can: the clients go through the followers.
		n.c.net.Cut(clientName, leader)
		n.done(fault, leader, OK, "cut every client's link to "+leader+" (leader)", "")
		return func() { n.repair("heal", leader, "healed all links", func() error { n.c.net.HealAll(); return nil }) }
	case fault == "lossy-network":
		// Every link between nodes loses 5 to 30% of its chunks, each then
		// late by a retransmission timeout of 200 ms.
		prob := float64(5+pick%26) / 100
		for _, a := range n.c.IDs() {
			for _, b := range n.c.IDs() {
				if a != b {
					n.c.net.Loss(a, b, prob, 200*time.Millisecond)
				}
			}
		}
		n.done(fault, "", OK, fmt.Sprintf("every link loses %.0f%% of its chunks (200 ms to retransmit)", prob*100), "")
		return func() { n.repair("heal", "", "removed the loss", func() error { n.c.net.HealAll(); return nil }) }
	case fault == "partition-bridge":
		// The leader and one follower cannot see each other; the other
		// follower sees both (Jepsen's bridge).
		other := n.follower(leader, pick)
		n.c.net.Cut(leader, other)
		n.c.net.Cut(other, leader)
		n.done(fault, leader, OK, "cut "+leader+" <-> "+other+" (leader "+leader+"); the third node bridges", "")
		return func() { n.repair("heal", leader, "healed all links", func() error { n.c.net.HealAll(); return nil }) }
	case fault == "partition-one-way":
		// What the leader sends is lost; what it receives arrives.
		for _, id := range n.c.IDs() {
			if id != leader {
				n.c.net.Cut(leader, id)
			}
		}
		n.done(fault, leader, OK, "cut every link from "+leader+" (leader), one way", "")
		return func() { n.repair("heal", leader, "healed all links", func() error { n.c.net.HealAll(); return nil }) }
	case fault == "slow-network":
		// Every link between nodes delayed by 20 to 200 ms.
		d := time.Duration(20+pick%181) * time.Millisecond
		for _, a := range n.c.IDs() {
			for _, b := range n.c.IDs() {
				if a != b {
					n.c.net.Delay(a, b, d)
				}
			}
		}
		n.done(fault, "", OK, fmt.Sprintf("every link delayed by %v", d), "")
		return func() { n.repair("heal", "", "removed the delays", func() error { n.c.net.HealAll(); return nil }) }
	case strings.HasPrefix(fault, "partition-"):
		n.c.net.Isolate(target)
		n.done(fault, target, OK, "isolated "+target+" (leader "+leader+")", "")
		return func() { n.repair("heal", target, "healed all links", func() error { n.c.net.HealAll(); return nil }) }
	case strings.HasPrefix(fault, "kill-"):
		if err := n.c.Kill(target); err != nil {
			n.done(fault, target, Info, "", err.Error())
			return nil
		}
		n.done(fault, target, OK, "killed "+target+" (leader "+leader+")", "")
		return func() { n.repair("restart", target, "restarted "+target, func() error { return n.c.Restart(target) }) }
	case strings.HasPrefix(fault, "pause-"):
		if err := n.c.Pause(target); err != nil {
			n.done(fault, target, Info, "", err.Error())
			return nil
		}
		n.done(fault, target, OK, "paused "+target+" (leader "+leader+")", "")
		return func() { n.repair("resume", target, "resumed "+target, func() error { return n.c.Resume(target) }) }
	}
	panic("unknown fault " + fault)
}

// awaitRepair waits until node id, restarted over a flipped bit, reports
// a repaired segment (within 20 s) or else lists the damage (it refuses
// the damaged records), and records which as the op "detect" (info if
// neither).
func (n *nemesis) awaitRepair(ctx context.Context, id string) {
	n.hist.Add(Op{Process: "nemesis", Node: id, Type: Invoke, F: "detect"})
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := n.c.status(ctx, id)
		switch {
		case err == nil && st.SegmentsRepaired > 0:
			n.done("detect", id, OK, fmt.Sprintf("repaired %d segment(s) from peers (%d scrub passes)", st.SegmentsRepaired, st.ScrubPasses), "")
			return
		case err == nil && len(st.Damaged) > 0 && time.Now().After(deadline):
			d := st.Damaged[0]
			n.done("detect", id, OK, fmt.Sprintf("refusing damaged %s/%d %s: %s", d.Topic, d.Partition, d.Segment, d.Reason), "")
			return
		case time.Now().After(deadline) || ctx.Err() != nil:
			n.done("detect", id, Info, "", "neither a repair nor damage reported within 20 s")
			return
		}
		pause(ctx, 200*time.Millisecond)
	}
}

// follower picks a node other than leader.
func (n *nemesis) follower(leader string, pick int) string {
	var followers []string
	for _, id := range n.c.IDs() {
		if id != leader {
			followers = append(followers, id)
		}
	}
	sort.Strings(followers)
	return followers[pick%len(followers)]
}

func (n *nemesis) done(f, node, typ, value, errText string) {
	n.hist.Add(Op{Process: "nemesis", Node: node, Type: typ, F: f, Value: value, Error: errText})
	msg := value
	if errText != "" {
		msg = errText
	}
	n.logf("%6.1fs nemesis %s %s: %s", n.hist.Since().Seconds(), f, typ, msg)
}

// repair runs a repair step as an op of the nemesis and reports whether
// it was done.
func (n *nemesis) repair(f, node, value string, do func() error) bool {
	n.hist.Add(Op{Process: "nemesis", Node: node, Type: Invoke, F: f})
	if err := do(); err != nil {
		n.done(f, node, Info, "", err.Error())
		return false
	}
	n.done(f, node, OK, value, "")
	return true
}
