//go:build !walmq_planted_bug

package fsm

// plantedBug: see planted_bug.go (off in every normal build).
const plantedBug = false
