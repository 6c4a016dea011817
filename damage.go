package walmq

import "github.com/walmq/walmq/cluster"

// DamagedSegment is a sealed journal segment holding a damaged record, as
// a node's status reports it: its topic, partition and file, the damaged
// record's byte position and why, and the offsets [First, Next) it holds.
// The node refuses its damaged records (ErrCorrupt) until it has repaired
// the segment from a peer.
type DamagedSegment = cluster.DamagedSegment
