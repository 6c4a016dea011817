package main

import (
	"runtime"
	"runtime/debug"
)

// defaultGCPercent is the collector's target when GOGC is not set. A node
// under publish load allocates fast (every batch is copied by the gRPC
// decoder, the Raft log store and bbolt) while its live heap stays a few
// MB, so at Go's default of 100 it collects about 70 times a second, and
// each cycle's assists and pauses land on the publish path. 200 lets the
// heap reach three times the live data between cycles: measured on 2
// cores, single-node `walmq bench` publishes 7 % more (medians of 3),
// three nodes 5 %. GOGC (and GOMEMLIMIT) still apply when set.
const defaultGCPercent = 200

// tuneGC sets defaultGCPercent unless GOGC is set; it returns the
// percent it set, or 0.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}

// tuneProcs runs Go with one more P than its default (the CPUs it may
// use) unless GOMAXPROCS is set; it returns the value it set, or 0.
//
// The node's hottest goroutines spend much of their time in system calls
// that wait for the disk: Raft's leader loop in raft-boltdb's two
// fdatasyncs per write (most of each write's 0.8 ms), the state machine in
// its journal writes. Go gives a goroutine's P away while it waits; when
// the call returns, the goroutine needs a P again, and with as many Ps as
// CPUs under publish load it often finds none free and waits in the run
// queue (runtime/metrics' /sched/latencies: p90 164 µs, p99 0.5-0.65 ms on
// 2 CPUs). One spare P lets it run at once and leaves the choice of CPU to
// the kernel, which wakes a thread back from I/O promptly. Measured on 2
// CPUs, interleaved: single-node `walmq bench` publishes a median 340 k
// msg/s with 3 Ps against 308 k with 2 (6 and 8 runs), 327 k with 4;
// three nodes 149 k against 144 k.
func tuneProcs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return 0
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	return n
}
