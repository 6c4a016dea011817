package main

import "runtime/debug"

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
