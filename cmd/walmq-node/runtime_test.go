package main

import (
	"runtime"
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
	env := envWith("GOGC", "50")
	if got := tuneGC(env); got != 0 {
		t.Fatalf("tuneGC with GOGC=50 set %d, want nothing", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("GC percent after tuneGC with GOGC set = %d, want it untouched (100)", now)
	}
}

func TestTuneProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(orig)

	if got := tuneProcs(func(string) string { return "" }); got != orig+1 {
		t.Fatalf("tuneProcs with GOMAXPROCS unset = %d, want %d", got, orig+1)
	}
	if now := runtime.GOMAXPROCS(orig); now != orig+1 {
		t.Fatalf("GOMAXPROCS after tuneProcs = %d, want %d", now, orig+1)
	}
	env := envWith("GOMAXPROCS", "1")
	if got := tuneProcs(env); got != 0 {
		t.Fatalf("tuneProcs with GOMAXPROCS=1 set %d, want nothing", got)
	}
	if now := runtime.GOMAXPROCS(0); now != orig {
		t.Fatalf("GOMAXPROCS after tuneProcs with GOMAXPROCS set = %d, want it untouched (%d)", now, orig)
	}
}

// envWith is a getenv where only key is set, to value.
func envWith(key, value string) func(string) string {
	return func(k string) string {
		if k == key {
			return value
		}
		return ""
	}
}
