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

func TestTuneProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(orig)

	if got := tuneProcs(func(string) string { return "" }); got != orig+1 {
		t.Fatalf("tuneProcs with GOMAXPROCS unset = %d, want %d", got, orig+1)
	}
	if now := runtime.GOMAXPROCS(orig); now != orig+1 {
		t.Fatalf("GOMAXPROCS after tuneProcs = %d, want %d", now, orig+1)
	}
	env := func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}
	if got := tuneProcs(env); got != 0 {
		t.Fatalf("tuneProcs with GOMAXPROCS=1 set %d, want nothing", got)
	}
	if now := runtime.GOMAXPROCS(0); now != orig {
		t.Fatalf("GOMAXPROCS after tuneProcs with GOMAXPROCS set = %d, want it untouched (%d)", now, orig)
	}
}
