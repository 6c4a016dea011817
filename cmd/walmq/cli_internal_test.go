package main

import (
	"flag"
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		pos  []string
		key  string
		acks bool
	}{
		{"flags first", []string{"--key", "k", "--acks", "t", "m"}, []string{"t", "m"}, "k", true},
		{"flags last", []string{"t", "m", "--key=k", "-acks"}, []string{"t", "m"}, "k", true},
		{"flags between", []string{"t", "--key", "k", "m1", "--acks", "m2"}, []string{"t", "m1", "m2"}, "k", true},
		{"dash dash", []string{"t", "--acks", "--", "-5", "--key"}, []string{"t", "-5", "--key"}, "", true},
		{"a lone dash is an argument", []string{"t", "-"}, []string{"t", "-"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			key := fs.String("key", "", "")
			acks := fs.Bool("acks", false, "")
			pos, err := parseInterspersed(fs, tc.args)
			if err != nil || !slices.Equal(pos, tc.pos) || *key != tc.key || *acks != tc.acks {
				t.Fatalf("got %q, key %q, acks %v, %v; want %q, key %q, acks %v", pos, *key, *acks, err, tc.pos, tc.key, tc.acks)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	w := newWindow(2, 100)
	blocks := func(n int) chan struct{} {
		t.Helper()
		done := make(chan struct{})
		go func() {
			w.acquire(n)
			close(done)
		}()
		select {
		case <-done:
			t.Fatalf("acquire(%d) did not wait", n)
		case <-time.After(50 * time.Millisecond):
		}
		return done
	}
	w.acquire(60)
	done := blocks(60) // the byte bound
	w.release(60)
	<-done
	w.acquire(1)
	done = blocks(1) // the count bound
	w.release(60)
	<-done
	w.release(1)
	w.release(1)
	w.acquire(500) // larger than the bound, alone
	w.release(500)
	w.wait()
}
