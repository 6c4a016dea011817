package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	if got := tuneGC(func(string) string { return "" }); got != defaultGCPercent {
		t.Fatalf("tuneGC with GOGC unset = %d, want %d", got, defaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Fatalf("GC percent after tuneGC = %d, want %d", now, defaultGCPercent)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	}
	if got := tuneGC(env); got != 0 {
		t.Fatalf("tuneGC with GOGC=50 set %d, want nothing", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("GC percent after tuneGC with GOGC set = %d, want it untouched (100)", now)
	}
}
