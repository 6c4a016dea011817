package main

import (
	"fmt"
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

// final is the final read of three equal replicas holding the entries.
func (s *scenario) final() FinalRead {
	r := FinalRead{Nodes: []string{"n1", "n2", "n3"}, Entries: s.entries, Checksums: map[string][]walmq.PartitionChecksum{},
		Held: map[string][]uint64{}}
	for p, es := range s.entries {
		r.Ends = append(r.Ends, uint64(len(es)))
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
	res := Check(s.ops, s.final())
	mustBeValid(t, res)
	if res.Attempted != 12 || res.Acknowledged != 12 || res.Delivered != 12 || !res.ReplicasEqual || !res.ReadComplete {
		t.Fatalf("counts: %+v", res)
	}
}

func TestCheckLostAck(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", OK, position{0, 4}) // acknowledged, never stored
	res := Check(s.ops, s.final())
	mustFail(t, res, "lost")
	if res.Lost != 1 {
		t.Fatalf("lost = %d, want 1", res.Lost)
	}
}

func TestCheckDuplicate(t *testing.T) {
	s := baseline()
	s.store(2, "p1-3") // stored a second time
	res := Check(s.ops, s.final())
	mustFail(t, res, "duplicated")
	if res.Duplicated != 1 {
		t.Fatalf("duplicated = %d, want 1", res.Duplicated)
	}
}

func TestCheckUnexpected(t *testing.T) {
	s := baseline()
	s.store(1, "p9-0") // never published
	res := Check(s.ops, s.final())
	mustFail(t, res, "unexpected")
	if res.Unexpected != 1 {
		t.Fatalf("unexpected = %d, want 1", res.Unexpected)
	}
}

func TestCheckFailedButDelivered(t *testing.T) {
	s := baseline()
	s.attempt("p0-6", Fail).store(0, "p0-6")
	res := Check(s.ops, s.final())
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
	res := Check(s.ops, s.final())
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
	res := Check(s.ops, s.final())
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
	res := Check(s.ops, s.final())
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
	mustFail(t, Check(s.ops, s.final()), "misplaced")
}

func TestCheckReplicasDiffer(t *testing.T) {
	s := baseline()
	r := s.final()
	r.Checksums["n3"][1].CRC32C++
	res := Check(s.ops, r)
	mustFail(t, res, "replicas differ")
	if res.ReplicasEqual {
		t.Fatal("replicas equal")
	}

	r = s.final()
	delete(r.Checksums, "n2") // did not answer
	mustFail(t, Check(s.ops, r), "no checksum")

	r = s.final()
	r.Held["n1"][0]++ // holds more than the leader
	mustFail(t, Check(s.ops, r), "beyond the leader's end")
}

func TestCheckIncompleteRead(t *testing.T) {
	s := baseline()
	r := s.final()
	r.Ends[1]++ // an offset the read did not get
	mustFail(t, Check(s.ops, r), "incomplete")

	r = s.final()
	r.Errors = []string{"fetch: boom"}
	mustFail(t, Check(s.ops, r), "boom")
}

func TestCheckCorrupt(t *testing.T) {
	s := baseline()
	s.entries[0][1].ID = "p0-99"
	mustFail(t, Check(s.ops, s.final()), "corrupt")
}
