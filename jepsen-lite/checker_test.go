package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/walmq/walmq"
)

// scenario builds a history and a final read by hand.
type scenario struct {
	ops     []Op
	entries [][]Entry // per partition
}

func newScenario() *scenario { return &scenario{entries: make([][]Entry, partitions)} }

// attempt records one publish attempt of value by its producer, ending in
// typ; an ok names where the ack says it is.
func (s *scenario) attempt(value, typ string, at ...position) *scenario {
	proc, _, _ := splitValue(value)
	s.ops = append(s.ops, Op{Process: proc, Type: Invoke, F: FPublish, Value: value})
	op := Op{Process: proc, Type: typ, F: FPublish, Value: value}
	if typ == OK {
		op.Partition, op.Offset = intPtr(at[0].Partition), uint64Ptr(at[0].Offset)
	}
	s.ops = append(s.ops, op)
	return s
}

// store appends value to partition p of the final read, at its next offset.
func (s *scenario) store(p int, values ...string) *scenario {
	for _, v := range values {
		s.entries[p] = append(s.entries[p], Entry{Offset: uint64(len(s.entries[p])), Value: v})
	}
	return s
}

// acked publishes value, acknowledged at the next offset of partition p,
// and stores it there.
func (s *scenario) acked(p int, value string) *scenario {
	s.attempt(value, OK, position{p, uint64(len(s.entries[p]))})
	return s.store(p, value)
}

// history is the scenario's ops, then the drain of the consumers' group:
// one fetch delivering every stored message and the final describe of
// the group, its floors at the ends.
func (s *scenario) history() []Op {
	ops := append([]Op(nil), s.ops...)
	drain := Op{Process: "drain", Type: OK, F: FFetch}
	var floors []uint64
	for p, es := range s.entries {
		for _, e := range es {
			drain.Msgs = append(drain.Msgs, Msg{P: p, O: e.Offset, V: e.Value, D: 1})
		}
		floors = append(floors, uint64(len(es)))
	}
	return append(ops, Op{Process: "drain", Type: Invoke, F: FFetch}, drain,
		Op{Process: "final", Type: Invoke, F: FDescribe}, Op{Process: "final", Type: OK, F: FDescribe, Floors: floors})
}

// final is the final read of three equal replicas holding the entries.
func (s *scenario) final() FinalRead {
	r := FinalRead{Nodes: []string{"n1", "n2", "n3"}, Entries: s.entries, Checksums: map[string][]walmq.PartitionChecksum{},
		Held: map[string][]uint64{}, NodeEntries: map[string][][]Entry{}}
	for _, id := range r.Nodes {
		for _, es := range s.entries {
			r.NodeEntries[id] = append(r.NodeEntries[id], stripIDs(es))
		}
	}
	for p, es := range s.entries {
		r.Ends = append(r.Ends, uint64(len(es)))
		r.Floors = append(r.Floors, uint64(len(es)))
		for _, id := range r.Nodes {
			r.Checksums[id] = append(r.Checksums[id], walmq.PartitionChecksum{Partition: p, Upto: uint64(len(es)),
				Messages: uint64(len(es)), CRC32C: uint32(len(es)) * 7})
			r.Held[id] = append(r.Held[id], uint64(len(es)))
		}
	}
	return r
}

// baseline is a valid run: two producers, values spread over the
// partitions.
func baseline() *scenario {
	s := newScenario()
	for i := range 6 {
		s.acked(i%partitions, fmt.Sprintf("p0-%d", i))
		s.acked((i+1)%partitions, fmt.Sprintf("p1-%d", i))
	}
	return s
}

func mustBeValid(t *testing.T, res Result) {
	t.Helper()
	if !res.Valid {
		t.Fatalf("invalid: %+v", res)
	}
}

// mustFail checks the result is invalid with a problem mentioning want.
func mustFail(t *testing.T, res Result, want string) {
	t.Helper()
	if res.Valid {
		t.Fatalf("valid, want a %q problem: %+v", want, res)
	}
	for _, p := range res.Problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Fatalf("no %q problem in %q", want, res.Problems)
}

func TestCheckValid(t *testing.T) {
	s := baseline()
	res := Check(s.history(), s.final())
	mustBeValid(t, res)
	if res.Attempted != 12 || res.Acknowledged != 12 || res.Delivered != 12 || !res.ReplicasEqual || !res.ReadComplete {
		t.Fatalf("counts: %+v", res)
	}
}

func TestCheckLostAck(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", OK, position{0, 4}) // acknowledged, never stored
	res := Check(s.history(), s.final())
	mustFail(t, res, "lost")
	if res.Lost != 1 || res.LostAfter != 1 || res.LostBefore+res.LostBetween != 0 {
		t.Fatalf("lost = %d (before %d, between %d, after %d), want 1 after", res.Lost, res.LostBefore, res.LostBetween, res.LostAfter)
	}
}

func TestCheckDuplicate(t *testing.T) {
	s := baseline()
	s.store(2, "p1-3") // stored a second time
	res := Check(s.history(), s.final())
	mustFail(t, res, "duplicated")
	if res.Duplicated != 1 {
		t.Fatalf("duplicated = %d, want 1", res.Duplicated)
	}
}

func TestCheckUnexpected(t *testing.T) {
	s := baseline()
	s.store(1, "p9-0") // never published
	res := Check(s.history(), s.final())
	mustFail(t, res, "unexpected")
	if res.Unexpected != 1 {
		t.Fatalf("unexpected = %d, want 1", res.Unexpected)
	}
}

func TestCheckFailedButDelivered(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", Fail).store(0, "p0-6")
	res := Check(s.history(), s.final())
	mustFail(t, res, "failed but delivered")
	if res.Failed != 1 || res.FailedDelivered != 1 {
		t.Fatalf("failed = %d, failed-delivered = %d; want 1, 1", res.Failed, res.FailedDelivered)
	}
}

func TestCheckOrderViolation(t *testing.T) {
	s := newScenario()
	// p0-1 is acknowledged at offset 0 before p0-0... at offset 1: the
	// acks are right, the order is not.
	s.attempt("p0-0", OK, position{0, 1})
	s.attempt("p0-1", OK, position{0, 0})
	s.store(0, "p0-1", "p0-0")
	res := Check(s.history(), s.final())
	mustFail(t, res, "order")
	if res.OrderViolations != 1 || res.MisplacedAcks != 0 {
		t.Fatalf("order violations = %d, misplaced = %d; want 1, 0", res.OrderViolations, res.MisplacedAcks)
	}
}

func TestCheckOrderAfterRetryIsNotAViolation(t *testing.T) {
	s := newScenario()
	// p0-0's first attempt timed out and was stored late, after p0-1:
	// its retry was acknowledged as a duplicate of that copy.
	s.attempt("p0-0", Info)
	s.attempt("p0-0", OK, position{0, 1})
	s.attempt("p0-1", OK, position{0, 0})
	s.store(0, "p0-1", "p0-0")
	res := Check(s.history(), s.final())
	mustBeValid(t, res)
	if res.Acknowledged != 2 {
		t.Fatalf("acknowledged = %d, want 2", res.Acknowledged)
	}
}

func TestCheckUnknownOutcomes(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", Info).store(0, "p0-6")                                           // recovered
	s.attempt("p1-6", Info)                                                            // not found: fine
	s.attempt("p0-7", Info).attempt("p0-7", Fail).store(1, "p0-7")                     // unknown first: may be stored
	s.attempt("p1-7", Fail)                                                            // refused, not found: fine
	s.ops = append(s.ops, Op{Process: "p0", Type: Invoke, F: FPublish, Value: "p0-8"}) // never completed
	res := Check(s.history(), s.final())
	mustBeValid(t, res)
	if res.Recovered != 2 || res.UnknownNotFound != 2 || res.Failed != 1 || res.Unknown != 4 || res.Attempted != 17 ||
		res.UnknownAttempts != 4 {
		t.Fatalf("counts: %+v", res)
	}
}

func TestCheckMisplacedAck(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", OK, position{2, 0}) // offset 0 of partition 2 holds p1-0
	s.store(2, "p0-6")
	mustFail(t, Check(s.history(), s.final()), "misplaced")
}

func TestCheckReplicasDiffer(t *testing.T) {
	s := baseline()
	r := s.final()
	r.Checksums["n3"][1].CRC32C++
	res := Check(s.history(), r)
	mustFail(t, res, "replicas differ")
	if res.ReplicasEqual {
		t.Fatal("replicas equal")
	}

	r = s.final()
	delete(r.Checksums, "n2") // did not answer
	mustFail(t, Check(s.history(), r), "no checksum")

	r = s.final()
	r.Held["n1"][0]++ // holds more than the leader
	mustFail(t, Check(s.history(), r), "beyond the leader's end")
}

func TestCheckIncompleteRead(t *testing.T) {
	s := baseline()
	r := s.final()
	r.Ends[1]++ // an offset the read did not get
	mustFail(t, Check(s.history(), r), "incomplete")

	r = s.final()
	r.Errors = []string{"fetch: boom"}
	mustFail(t, Check(s.history(), r), "boom")
}

func TestCheckCorrupt(t *testing.T) {
	s := baseline()
	s.entries[0][1].ID = "p0-99"
	mustFail(t, Check(s.history(), s.final()), "corrupt")
}

// op appends a completed op of process (its invocation first).
func (s *scenario) op(process, f, typ string, msgs []Msg, floors []uint64) *scenario {
	s.ops = append(s.ops, Op{Process: process, Type: Invoke, F: f},
		Op{Process: process, Type: typ, F: f, Msgs: msgs, Floors: floors})
	return s
}

func TestCheckConsumeValid(t *testing.T) {
	s := baseline()
	s.op("c0", FFetch, OK, []Msg{{P: 0, O: 0, V: "p0-0", D: 1}, {P: 1, O: 0, V: "p1-0", D: 1}}, nil)
	s.op("c0", FFetch, OK, []Msg{{P: 0, O: 0, V: "p0-0", D: 2}}, nil) // redelivered: allowed
	s.op("g", FDescribe, OK, nil, []uint64{1, 0, 0})
	s.op("g", FDescribe, OK, nil, []uint64{1, 1, 0})
	s.op("r-n2", FReadAt, OK, []Msg{{P: 1, O: 0, V: "p1-0"}, {P: 1, O: 1, V: "p0-1"}}, nil)
	res := Check(s.history(), s.final())
	mustBeValid(t, res)
	if !res.NodesEqual || !res.GroupDrained || res.Fetched != 12 || res.Redelivered != 1 || res.ReadsChecked != 2 {
		t.Fatalf("counts: %+v", res.consumeResult)
	}
}

func TestCheckMisdelivered(t *testing.T) {
	s := baseline()
	s.op("c1", FFetch, OK, []Msg{{P: 0, O: 1, V: "p1-0", D: 1}}, nil) // 0@1 holds p1-2
	res := Check(s.history(), s.final())
	mustFail(t, res, "misdelivered")
	if res.Misdelivered != 1 {
		t.Fatalf("misdelivered = %d, want 1", res.Misdelivered)
	}
}

func TestCheckUndeliveredAndNotDrained(t *testing.T) {
	s := baseline()
	ops := s.history()
	// The drain delivered all but the last message of partition 2, and the
	// group's floor stopped one short there.
	for i := range ops {
		if ops[i].Process == "drain" && ops[i].Type == OK {
			ops[i].Msgs = ops[i].Msgs[:len(ops[i].Msgs)-1]
		}
	}
	r := s.final()
	r.Floors[2]--
	res := Check(ops, r)
	mustFail(t, res, "undelivered")
	mustFail(t, res, "not drained")
	if res.Undelivered != 1 || res.GroupDrained {
		t.Fatalf("counts: %+v", res.consumeResult)
	}
}

func TestCheckFloorRegression(t *testing.T) {
	s := baseline()
	s.op("g", FDescribe, OK, nil, []uint64{3, 1, 2})
	s.op("g", FDescribe, OK, nil, []uint64{3, 0, 2}) // partition 1 moved back
	res := Check(s.history(), s.final())
	mustFail(t, res, "ack floor moved back")
	if res.FloorRegressions != 1 {
		t.Fatalf("floor regressions = %d, want 1", res.FloorRegressions)
	}
	// Overlapping describes may complete in either order.
	s = baseline()
	s.ops = append(s.ops, Op{Process: "g", Type: Invoke, F: FDescribe}, Op{Process: "final", Type: Invoke, F: FDescribe},
		Op{Process: "final", Type: OK, F: FDescribe, Floors: []uint64{3, 1, 2}},
		Op{Process: "g", Type: OK, F: FDescribe, Floors: []uint64{2, 1, 2}})
	mustBeValid(t, Check(s.history(), s.final()))
}

func TestCheckDivergentRead(t *testing.T) {
	s := baseline()
	s.op("r-n3", FReadAt, OK, []Msg{{P: 2, O: 0, V: "p1-1"}, {P: 2, O: 9, V: "p0-99"}}, nil)
	res := Check(s.history(), s.final())
	mustFail(t, res, "divergent reads")
	if res.DivergentReads != 1 || res.ReadsChecked != 2 {
		t.Fatalf("counts: %+v", res.consumeResult)
	}
}

func TestCheckNodesDiffer(t *testing.T) {
	s := baseline()
	r := s.final()
	r.NodeEntries["n2"][1] = r.NodeEntries["n2"][1][:2] // n2 lacks the tail of partition 1
	mustFail(t, Check(s.history(), r), "nodes differ")
	r = s.final()
	r.NodeEntries["n3"][0] = slices.Clone(r.NodeEntries["n3"][0])
	r.NodeEntries["n3"][0][1].Value = "p9-9" // n3 holds something else at 0@1
	mustFail(t, Check(s.history(), r), "nodes differ")
	// A damaged range refused, not served, is not a difference.
	r = s.final()
	r.NodeEntries["n2"][1] = r.NodeEntries["n2"][1][:2]
	r.Refused = map[string][]int{"n2": {1}}
	res := Check(s.history(), r)
	mustBeValid(t, res)
	if res.Refused != 1 {
		t.Fatalf("refused = %d, want 1", res.Refused)
	}
	// A refusal in one partition excuses nothing in another.
	r.Refused = map[string][]int{"n2": {0}}
	mustFail(t, Check(s.history(), r), "nodes differ")
}

func TestCheckFlipUndetected(t *testing.T) {
	s := baseline()
	s.ops = append(s.ops, Op{Process: "nemesis", Node: "n2", Type: OK, F: "flip"},
		Op{Process: "nemesis", Node: "n2", Type: Info, F: "detect", Error: "neither"})
	res := Check(s.history(), s.final())
	mustFail(t, res, "flipped bit not detected")
	if res.BitFlips != 1 || res.FlipsDetected != 0 {
		t.Fatalf("counts: %+v", res.consumeResult)
	}
}

func TestCheckLostSplit(t *testing.T) {
	s := newScenario()
	s.attempt("p0-0", OK, position{0, 0}) // lost before p0's first delivered value
	s.acked(0, "p0-1")
	s.attempt("p0-2", OK, position{0, 1}) // lost between
	s.acked(0, "p0-3")
	s.attempt("p0-4", OK, position{0, 2}) // lost after
	s.attempt("p1-0", OK, position{1, 0}) // p1 has nothing delivered: after
	res := Check(s.history(), s.final())
	mustFail(t, res, "lost")
	if res.Lost != 4 || res.LostBefore != 1 || res.LostBetween != 1 || res.LostAfter != 2 {
		t.Fatalf("lost = %d (before %d, between %d, after %d), want 4 (1, 1, 2)", res.Lost, res.LostBefore, res.LostBetween, res.LostAfter)
	}
}
