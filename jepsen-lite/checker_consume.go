package main

import (
	"fmt"
	"slices"
)

// consumeResult is what the checker finds in the consumers', the
// sampler's and the readers' ops, and in every node's replica.
type consumeResult struct {
	NodesEqual       bool `json:"nodes_equal"`     // every node's replica read back equals the final read
	Refused          int  `json:"refused_damaged"` // partitions a node refused as damaged at the end
	Fetched          int  `json:"fetched"`         // distinct values the group delivered
	Redelivered      int  `json:"redelivered"`     // deliveries after the first
	Undelivered      int  `json:"undelivered"`     // in the final read, never delivered to the group
	Misdelivered     int  `json:"misdelivered"`    // delivered at an offset that holds something else
	GroupDrained     bool `json:"group_drained"`   // the group's ack floor reached the end everywhere
	FloorRegressions int  `json:"floor_regressions"`
	ReadsChecked     int  `json:"reads_checked"`   // messages returned by the readers' Reads
	DivergentReads   int  `json:"divergent_reads"` // of those, not what the final read holds there
	BitFlips         int  `json:"bit_flips"`       // bits the nemesis flipped in sealed segments
	FlipsDetected    int  `json:"flips_detected"`  // the node then reported a repair or the damage
}

// checkConsume checks deliveries, floors and reads against the final read
// (final: the value at each position) and states (the publishes). It
// returns its counters and the problems, by kind, with examples.
func checkConsume(ops []Op, r FinalRead, final map[position]string, states map[string]*valueState) (consumeResult, map[string][]string) {
	var res consumeResult
	problems := map[string][]string{}
	add := func(kind, format string, args ...any) {
		problems[kind] = append(problems[kind], fmt.Sprintf(format, args...))
	}

	// Every node's replica, as Read returns it, equals the final read.
	res.NodesEqual = len(r.NodeEntries) == len(r.Nodes)
	for _, id := range r.Nodes {
		es, ok := r.NodeEntries[id]
		if !ok {
			add("nodes", "no read of %s's replica", id)
			continue
		}
		res.Refused += len(r.Refused[id])
		for p := range r.Entries {
			var got []Entry
			if p < len(es) {
				got = es[p]
			}
			if slices.Equal(got, stripIDs(r.Entries[p])) {
				continue
			}
			if slices.Contains(r.Refused[id], p) && len(got) < len(r.Entries[p]) && slices.Equal(got, stripIDs(r.Entries[p])[:len(got)]) {
				continue // the damaged range was refused, not served
			}
			res.NodesEqual = false
			add("nodes", "%s partition %d: %s", id, p, firstDifference(got, r.Entries[p]))
		}
	}

	// Deliveries: each one is what the partition holds at its offset.
	delivered := map[string]bool{}
	for _, op := range ops {
		if op.Type != OK || op.F != FFetch {
			continue
		}
		for _, m := range op.Msgs {
			if m.D > 1 {
				res.Redelivered++
			}
			if v, ok := final[position{m.P, m.O}]; !ok || v != m.V {
				res.Misdelivered++
				add("misdelivered", "%s got %q at %v, which holds %q", op.Process, m.V, position{m.P, m.O}, v)
			}
			if !delivered[m.V] {
				delivered[m.V] = true
				if st := states[m.V]; st != nil && st.oks == 0 && st.info == 0 {
					add("failed-delivered", "%s got %q, whose every publish was refused", op.Process, m.V)
				}
			}
		}
	}
	res.Fetched = len(delivered)
	for p, es := range r.Entries {
		for _, e := range es {
			if !delivered[e.Value] {
				res.Undelivered++
				add("undelivered", "%q at %v", e.Value, position{p, e.Offset})
			}
		}
	}
	res.GroupDrained = len(r.Floors) == len(r.Ends) && len(r.Ends) > 0
	for p := range r.Floors {
		if p < len(r.Ends) && r.Floors[p] < r.Ends[p] {
			res.GroupDrained = false
		}
	}
	if !res.GroupDrained {
		add("drain", "floors %v after the drain, ends %v", r.Floors, r.Ends)
	}

	// The ack floor never moves back: a describe invoked after another
	// completed sees floors at least as high.
	var highest []uint64 // per partition, over the describes completed so far
	seenAtInvoke := map[string][]uint64{}
	for _, op := range ops {
		if op.F != FDescribe {
			continue
		}
		if op.Type == Invoke {
			seenAtInvoke[op.Process] = slices.Clone(highest)
			continue
		}
		if op.Type != OK {
			continue
		}
		before := seenAtInvoke[op.Process]
		for p, f := range op.Floors {
			if p < len(before) && f < before[p] {
				res.FloorRegressions++
				add("floor", "%s at %.3fs: partition %d floor %d, after %d was seen", op.Process, float64(op.Time)/1e9, p, f, before[p])
			}
			for len(highest) <= p {
				highest = append(highest, 0)
			}
			highest[p] = max(highest[p], f)
		}
	}

	// Flipped bits: each is found (repaired or listed as damage).
	for _, op := range ops {
		switch {
		case op.Process != "nemesis":
		case op.F == "flip" && op.Type == OK:
			res.BitFlips++
		case op.F == "detect" && op.Type == OK:
			res.FlipsDetected++
		case op.F == "detect" && op.Type == Info:
			add("flip", "%s at %.3fs: %s", op.Node, float64(op.Time)/1e9, op.Error)
		}
	}

	// Readers: every message a node served is committed, so it is what
	// the final read holds there.
	for _, op := range ops {
		if op.Type != OK || op.F != FReadAt {
			continue
		}
		for _, m := range op.Msgs {
			res.ReadsChecked++
			if v, ok := final[position{m.P, m.O}]; !ok || v != m.V {
				res.DivergentReads++
				add("reads", "%s read %q at %v, which holds %q", op.Process, m.V, position{m.P, m.O}, v)
			}
		}
	}
	return res, problems
}

// stripIDs returns es without their ids (a node read compares payloads).
func stripIDs(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry{Offset: e.Offset, Value: e.Value}
	}
	return out
}

// firstDifference describes where a node's read departs from the final
// read.
func firstDifference(got, want []Entry) string {
	for i := range min(len(got), len(want)) {
		if got[i].Offset != want[i].Offset || got[i].Value != want[i].Value {
			return fmt.Sprintf("offset %d holds %q, the final read %q at %d", got[i].Offset, got[i].Value, want[i].Value, want[i].Offset)
		}
	}
	return fmt.Sprintf("%d messages, the final read %d", len(got), len(want))
}
