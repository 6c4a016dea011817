package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Op types, as in Jepsen: an invocation, then its completion: ok (it
// happened), fail (it certainly did not) or info (unknown).
const (
	Invoke = "invoke"
	OK     = "ok"
	Fail   = "fail"
	Info   = "info"
)

// Op functions besides the nemesis's (whose f is the fault's name, or
// "heal", "restart", "resume").
const (
	FPublish  = "publish"
	FRead     = "read"     // the final read of a partition through the leader
	FFetch    = "fetch"    // a consumer's fetch from the group
	FAck      = "ack"      // a consumer's ack of the messages it fetched
	FDescribe = "describe" // the group's ack floors, per partition
	FReadAt   = "read-at"  // a reader's Read of one node's replica from an offset
	FNodeRead = "node-read"
)

// Op is one line of the history.
type Op struct {
	Index   int    `json:"index"`
	Time    int64  `json:"time"`    // ns since the start of the run
	Process string `json:"process"` // "p0".. producers, "c0".. consumers, "r-n1".. readers, "g", "nemesis", "reader", "drain"
	Node    string `json:"node,omitempty"`
	Type    string `json:"type"`
	F       string `json:"f"`
	Value   string `json:"value,omitempty"`
	Error   string `json:"error,omitempty"`
	// Partition and Offset: where an acknowledged publish is stored, or
	// the partition a read covers.
	Partition *int    `json:"partition,omitempty"`
	Offset    *uint64 `json:"offset,omitempty"`
	Duplicate bool    `json:"duplicate,omitempty"` // the ack was a dedup hit
	Read      []Entry `json:"read,omitempty"`      // a read's messages, in offset order
	// Msgs are the messages a fetch delivered, an ack settled or a
	// read-at returned; Floors a describe's ack floor per partition.
	Msgs   []Msg    `json:"msgs,omitempty"`
	Floors []uint64 `json:"floors,omitempty"`
}

// Msg is a message a client saw: partition, offset, payload and, for a
// fetch, its delivery count.
type Msg struct {
	P int    `json:"p"`
	O uint64 `json:"o"`
	V string `json:"v"`
	D uint32 `json:"d,omitempty"`
}

// Entry is one message of a final read.
type Entry struct {
	Offset uint64 `json:"offset"`
	Value  string `json:"value"`        // the payload
	ID     string `json:"id,omitempty"` // the message id, when it differs from the payload
}

// header is the first line of a history file.
type header struct {
	Seed int64 `json:"seed"`
	// Start is the wall-clock time ops' times count from (RFC 3339), to
	// line them up with the nodes' logs.
	Start string `json:"start,omitempty"`
}

// History records ops in memory and as JSON lines in a file.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
	w   *bufio.Writer
	f   *os.File
	err error
}

// NewHistory creates the history file at path and writes its header.
func NewHistory(path string, seed int64) (*History, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := &History{start: time.Now(), f: f, w: bufio.NewWriter(f)}
	h.writeLine(header{Seed: seed, Start: h.start.UTC().Format(time.RFC3339Nano)})
	return h, h.err
}

func (h *History) writeLine(v any) {
	if h.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		b = append(b, '\n')
		_, err = h.w.Write(b)
	}
	h.err = err
}

// Add records op, stamping its index and time, and returns it.
func (h *History) Add(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	op.Time = time.Since(h.start).Nanoseconds()
	h.ops = append(h.ops, op)
	h.writeLine(op)
	return op
}

// Since is the time since the run started.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// Ops returns a copy of the ops recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Flush writes what is buffered to the file.
func (h *History) Flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = h.w.Flush()
	}
	return h.err
}

// Close flushes and closes the file.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = h.w.Flush()
	}
	return errors.Join(h.err, h.f.Close())
}

// ReadHistory reads a history file back: its seed and ops.
func ReadHistory(path string) (seed int64, ops []Op, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	var hd header
	if err := dec.Decode(&hd); err != nil {
		return 0, nil, fmt.Errorf("%s: header: %w", path, err)
	}
	for {
		var op Op
		if err := dec.Decode(&op); errors.Is(err, io.EOF) {
			return hd.Seed, ops, nil
		} else if err != nil {
			return 0, nil, fmt.Errorf("%s: op %d: %w", path, len(ops), err)
		}
		ops = append(ops, op)
	}
}

func intPtr(v int) *int          { return &v }
func uint64Ptr(v uint64) *uint64 { return &v }
