package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/walmq/walmq"
)

// Result is the checker's verdict on a run. Counts are of distinct values.
type Result struct {
	Valid bool `json:"valid"`

	Attempted    int `json:"attempted"`    // published at least once
	Acknowledged int `json:"acknowledged"` // some attempt was acknowledged
	Failed       int `json:"failed"`       // every attempt was refused for sure
	Unknown      int `json:"unknown"`      // neither: some attempt's outcome is unknown
	Delivered    int `json:"delivered"`    // attempted and found in the final read
	// UnknownAttempts counts publish attempts (not values) whose outcome
	// was unknown: each was retried with the same id until one was
	// acknowledged, refused, or the run ended.
	UnknownAttempts int `json:"unknown_attempts"`

	Lost int `json:"lost"` // acknowledged, not found
	// Lost values split by where they fall among their producer's
	// delivered values: before its first, between, after its last.
	LostBefore      int `json:"lost_before"`
	LostBetween     int `json:"lost_between"`
	LostAfter       int `json:"lost_after"`
	Unexpected      int `json:"unexpected"`       // found, never attempted
	Duplicated      int `json:"duplicated"`       // found at more than one offset
	FailedDelivered int `json:"failed_delivered"` // refused for sure, yet found
	Recovered       int `json:"recovered"`        // unknown, found
	UnknownNotFound int `json:"unknown_not_found"`
	MisplacedAcks   int `json:"misplaced_acks"` // acknowledged at an offset that holds something else
	Corrupt         int `json:"corrupt"`        // messages whose id and payload differ
	OrderViolations int `json:"order_violations"`

	ReplicasEqual bool `json:"replicas_equal"`
	ReadComplete  bool `json:"read_complete"`

	consumeResult

	// Problems explain every reason the run is invalid, with examples.
	Problems []string `json:"problems,omitempty"`
}

// position is where a message is: partition and offset.
type position struct {
	Partition int
	Offset    uint64
}

func (p position) String() string { return fmt.Sprintf("%d@%d", p.Partition, p.Offset) }

// valueState is what the history says about one published value.
type valueState struct {
	attempts         int
	oks, fails, info int
	first            string     // how the first attempt ended
	acks             []position // where the acks said it is
}

// maxExamples bounds the examples listed per problem.
const maxExamples = 8

// Check judges a history and the final read of the cluster. It is valid
// iff no acknowledged value is lost, nothing unexpected, duplicated or
// corrupt is found, no value refused for sure is found, every ack names
// the offset its value is at, each producer's values acknowledged on their
// first attempt are in order within a partition, every replica holds the
// same messages, and the final read is complete.
func Check(ops []Op, r FinalRead) Result {
	states, values := publishStates(ops)
	found := map[string][]position{}
	var res Result
	var corrupt []string
	for p, es := range r.Entries {
		for _, e := range es {
			found[e.Value] = append(found[e.Value], position{p, e.Offset})
			if e.ID != "" && e.ID != e.Value {
				corrupt = append(corrupt, fmt.Sprintf("%s at %v has id %q", e.Value, position{p, e.Offset}, e.ID))
			}
		}
	}

	var lost, dup, failedFound, misplaced, unexpected []string
	for _, v := range values {
		st := states[v]
		at := found[v]
		res.Attempted++
		res.UnknownAttempts += st.info
		if len(at) > 0 {
			res.Delivered++
		}
		if len(at) > 1 {
			dup = append(dup, fmt.Sprintf("%s at %v", v, at))
		}
		switch {
		case st.oks > 0:
			res.Acknowledged++
			if len(at) == 0 {
				lost = append(lost, fmt.Sprintf("%s (acknowledged at %v)", v, st.acks))
				break
			}
			for _, a := range st.acks {
				if !slices.Contains(at, a) {
					misplaced = append(misplaced, fmt.Sprintf("%s acknowledged at %v, found at %v", v, a, at))
					break
				}
			}
		case st.fails > 0 && st.info == 0:
			res.Failed++
			if len(at) > 0 {
				failedFound = append(failedFound, fmt.Sprintf("%s at %v", v, at))
			}
		default:
			res.Unknown++
			if len(at) > 0 {
				res.Recovered++
			} else {
				res.UnknownNotFound++
			}
		}
	}
	for v, at := range found {
		if states[v] == nil {
			unexpected = append(unexpected, fmt.Sprintf("%q at %v", v, at))
		}
	}
	slices.Sort(unexpected)
	res.Lost, res.Duplicated, res.FailedDelivered = len(lost), len(dup), len(failedFound)
	res.LostBefore, res.LostBetween, res.LostAfter = splitLost(states, values, found)
	res.MisplacedAcks, res.Unexpected, res.Corrupt = len(misplaced), len(unexpected), len(corrupt)

	order := orderViolations(states, values, found)
	res.OrderViolations = len(order)
	replicaProblems := checkReplicas(r)
	res.ReplicasEqual = len(replicaProblems) == 0
	readProblems := checkRead(r)
	res.ReadComplete = len(readProblems) == 0

	add := func(what string, examples []string) {
		if len(examples) == 0 {
			return
		}
		n, more := len(examples), ""
		if n > maxExamples {
			more = fmt.Sprintf(", and %d more", n-maxExamples)
			examples = examples[:maxExamples]
		}
		res.Problems = append(res.Problems, fmt.Sprintf("%s (%d): %s%s", what, n, strings.Join(examples, "; "), more))
	}
	add("lost: acknowledged, not in the final read", lost)
	add("unexpected: in the final read, never published", unexpected)
	add("duplicated: at more than one offset", dup)
	add("failed but delivered: refused for sure, yet in the final read", failedFound)
	add("misplaced: the ack names an offset that holds something else", misplaced)
	add("corrupt: id and payload differ", corrupt)
	add("order: a producer's later value before its earlier one in a partition", order)
	add("replicas differ", replicaProblems)
	add("final read incomplete", readProblems)
	if r.NodeEntries != nil || r.Floors != nil { // absent from runs made before consumers and readers
		final := map[position]string{}
		for p, es := range r.Entries {
			for _, e := range es {
				final[position{p, e.Offset}] = e.Value
			}
		}
		var cp map[string][]string
		res.consumeResult, cp = checkConsume(ops, r, final, states)
		add("nodes differ: a node's replica read back is not the final read", cp["nodes"])
		add("misdelivered: a delivery's payload is not what its offset holds", cp["misdelivered"])
		add("failed but delivered to the group", cp["failed-delivered"])
		add("undelivered: in the final read, never delivered to the group", cp["undelivered"])
		add("group not drained", cp["drain"])
		add("ack floor moved back", cp["floor"])
		add("divergent reads: a node served what is not committed there", cp["reads"])
		add("flipped bit not detected", cp["flip"])
	}
	res.Valid = len(res.Problems) == 0
	return res
}

// splitLost counts the lost values (acknowledged, not found) of each
// producer before its first delivered value, between its first and last,
// and after its last (by counter). A producer with nothing delivered
// loses everything "after".
func splitLost(states map[string]*valueState, values []string, found map[string][]position) (before, between, after int) {
	first, last := map[string]int{}, map[string]int{}
	for _, v := range values {
		proc, n, ok := splitValue(v)
		if !ok || len(found[v]) == 0 {
			continue
		}
		if f, seen := first[proc]; !seen || n < f {
			first[proc] = n
		}
		if l, seen := last[proc]; !seen || n > l {
			last[proc] = n
		}
	}
	for _, v := range values {
		if states[v].oks == 0 || len(found[v]) > 0 {
			continue
		}
		proc, n, ok := splitValue(v)
		f, seen := first[proc]
		switch {
		case !ok || !seen || n > last[proc]:
			after++
		case n < f:
			before++
		default:
			between++
		}
	}
	return before, between, after
}

// publishStates sums up the publish ops per value; values lists them in
// the order of their first invocation.
func publishStates(ops []Op) (map[string]*valueState, []string) {
	states := map[string]*valueState{}
	var values []string
	open := map[string]string{} // process -> the value it invoked and has not completed
	end := func(st *valueState, typ string) {
		if st.first == "" {
			st.first = typ
		}
		switch typ {
		case OK:
			st.oks++
		case Fail:
			st.fails++
		default:
			st.info++
		}
	}
	for _, op := range ops {
		if op.F != FPublish {
			continue
		}
		if op.Type == Invoke {
			if v, ok := open[op.Process]; ok { // never completed: unknown
				end(states[v], Info)
			}
			open[op.Process] = op.Value
			if states[op.Value] == nil {
				states[op.Value] = &valueState{}
				values = append(values, op.Value)
			}
			states[op.Value].attempts++
			continue
		}
		st := states[op.Value]
		if st == nil || open[op.Process] != op.Value {
			continue // a completion without its invocation: ignore it
		}
		delete(open, op.Process)
		end(st, op.Type)
		if op.Type == OK && op.Partition != nil && op.Offset != nil {
			st.acks = append(st.acks, position{*op.Partition, *op.Offset})
		}
	}
	for _, v := range open {
		end(states[v], Info)
	}
	return states, values
}

// splitValue parses "p<n>-<counter>" into its producer and counter.
func splitValue(v string) (producer string, counter int, ok bool) {
	i := strings.LastIndexByte(v, '-')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(v[i+1:])
	return v[:i], n, err == nil
}

// orderViolations checks, per producer and partition, that the values
// acknowledged on their first attempt sit at increasing offsets in the
// order of their counters. A producer publishes one value at a time, so a
// value acknowledged before the next is published must come first. Values
// retried after an unknown outcome are left out: the first attempt may
// have been stored after a later value.
func orderViolations(states map[string]*valueState, values []string, found map[string][]position) []string {
	type item struct {
		value   string
		counter int
		offset  uint64
	}
	groups := map[string][]item{} // producer/partition -> items
	var keys []string
	for _, v := range values {
		st := states[v]
		prod, counter, ok := splitValue(v)
		if !ok || st.first != OK || len(found[v]) == 0 {
			continue
		}
		// Its first position in each partition it is found in.
		firsts := map[int]uint64{}
		for _, at := range found[v] {
			if o, seen := firsts[at.Partition]; !seen || at.Offset < o {
				firsts[at.Partition] = at.Offset
			}
		}
		for p, o := range firsts {
			k := fmt.Sprintf("%s/%d", prod, p)
			if groups[k] == nil {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], item{v, counter, o})
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		items := groups[k]
		slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.counter, b.counter) })
		for i := 1; i < len(items); i++ {
			a, b := items[i-1], items[i]
			if b.offset <= a.offset {
				out = append(out, fmt.Sprintf("partition %s: %s at offset %d, after it %s at offset %d",
					k[strings.IndexByte(k, '/')+1:], a.value, a.offset, b.value, b.offset))
			}
		}
	}
	return out
}

// checkReplicas compares every node's checksum of every partition and
// checks that no node holds more than the leader.
func checkReplicas(r FinalRead) []string {
	var out []string
	for p := range r.Ends {
		var (
			ref    *walmq.PartitionChecksum
			refID  string
			differ bool
		)
		for _, id := range r.Nodes {
			var got *walmq.PartitionChecksum
			for i := range r.Checksums[id] {
				if r.Checksums[id][i].Partition == p {
					got = &r.Checksums[id][i]
				}
			}
			switch {
			case got == nil:
				out = append(out, fmt.Sprintf("no checksum of partition %d from %s", p, id))
			case ref == nil:
				ref, refID = got, id
			case *got != *ref:
				differ = true
			}
			if held := r.Held[id]; p < len(held) && held[p] > r.Ends[p] {
				out = append(out, fmt.Sprintf("%s holds partition %d up to offset %d, beyond the leader's end %d", id, p, held[p], r.Ends[p]))
			}
		}
		if differ {
			var sums []string
			for _, id := range r.Nodes {
				for _, c := range r.Checksums[id] {
					if c.Partition == p {
						sums = append(sums, fmt.Sprintf("%s: [%d,%d) %d messages crc %08x", id, c.First, c.Upto, c.Messages, c.CRC32C))
					}
				}
			}
			out = append(out, fmt.Sprintf("partition %d (first answer from %s): %s", p, refID, strings.Join(sums, ", ")))
		}
	}
	return out
}

// checkRead checks that the final read holds every offset below the ends
// once, as many messages as the replicas' checksums count.
func checkRead(r FinalRead) []string {
	out := append([]string(nil), r.Errors...)
	if len(r.Ends) == 0 {
		return append(out, "no end offsets")
	}
	for p, end := range r.Ends {
		var es []Entry
		if p < len(r.Entries) {
			es = r.Entries[p]
		}
		dense := uint64(len(es)) == end
		for i, e := range es {
			dense = dense && e.Offset == uint64(i)
		}
		if !dense {
			out = append(out, fmt.Sprintf("partition %d: read %d messages, not offsets 0..%d once each", p, len(es), end))
		}
		for _, id := range r.Nodes {
			for _, c := range r.Checksums[id] {
				if c.Partition == p && c.First == 0 && c.Messages != uint64(len(es)) {
					out = append(out, fmt.Sprintf("partition %d: read %d messages, %s counts %d", p, len(es), id, c.Messages))
				}
			}
		}
	}
	return out
}

// WriteSummary prints a result for people.
func WriteSummary(w io.Writer, res Result) {
	verdict := "VALID"
	if !res.Valid {
		verdict = "INVALID"
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(w, "jepsen-lite: %s\n", verdict)
	rows := []struct {
		name string
		v    any
		note string
	}{
		{"attempted", res.Attempted, "values published at least once"},
		{"acknowledged", res.Acknowledged, ""},
		{"failed", res.Failed, "refused for sure"},
		{"unknown", res.Unknown, "outcome unknown"},
		{"delivered", res.Delivered, "found in the final read"},
		{"unknown-attempts", res.UnknownAttempts, "attempts retried after an unknown outcome"},
		{"lost", res.Lost, "acknowledged, not found"},
		{"lost-before", res.LostBefore, "of those, before their producer's first delivered value"},
		{"lost-between", res.LostBetween, "between its first and last delivered"},
		{"lost-after", res.LostAfter, "after its last delivered"},
		{"unexpected", res.Unexpected, "found, never published"},
		{"duplicated", res.Duplicated, "found at more than one offset"},
		{"failed-delivered", res.FailedDelivered, "refused for sure, yet found"},
		{"recovered", res.Recovered, "unknown, found"},
		{"unknown-not-found", res.UnknownNotFound, ""},
		{"misplaced-acks", res.MisplacedAcks, ""},
		{"corrupt", res.Corrupt, ""},
		{"order-violations", res.OrderViolations, ""},
		{"replicas-equal", yes(res.ReplicasEqual), "checksums of every node, up to the leader's ends"},
		{"read-complete", yes(res.ReadComplete), ""},
		{"nodes-equal", yes(res.NodesEqual), "every node's replica, read back, is the final read"},
		{"refused-damaged", res.Refused, "partitions a node refused as damaged at the end"},
		{"fetched", res.Fetched, "values the consumers' group delivered"},
		{"redelivered", res.Redelivered, "deliveries after a value's first"},
		{"undelivered", res.Undelivered, "in the final read, never delivered"},
		{"misdelivered", res.Misdelivered, "delivered at an offset holding something else"},
		{"group-drained", yes(res.GroupDrained), "the group's ack floor reached every end"},
		{"floor-regressions", res.FloorRegressions, "the group's ack floor seen moving back"},
		{"reads-checked", res.ReadsChecked, "messages the readers got from single nodes"},
		{"divergent-reads", res.DivergentReads, "of those, not what the final read holds"},
		{"bit-flips", res.BitFlips, "bits flipped in a stopped follower's sealed segments"},
		{"flips-detected", res.FlipsDetected, "then repaired from peers or reported damaged"},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-18s %8v  %s\n", r.name, r.v, r.note)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
}
