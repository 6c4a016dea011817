//go:build walmq_planted_bug

package fsm

// plantedBug is on only in builds with the tag walmq_planted_bug, which
// exist to show that jepsen-lite's checker can fail: every 17th publish
// entry is acknowledged with offsets but not stored, and its offsets are
// given to the next entry. Never ship such a build.
const plantedBug = true
