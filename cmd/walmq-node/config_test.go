package main

import (
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want config
		err  error
	}{
		{name: "defaults",
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info}},
		{name: "socket follows data", args: []string{"--data", "/var/lib/q"},
			want: config{DataDir: "/var/lib/q", Listen: "127.0.0.1:7420", Socket: "/var/lib/q/walmq.sock", LogLevel: hclog.Info}},
		{name: "environment",
			env:  map[string]string{"WALMQ_DATA": "d", "WALMQ_LISTEN": "127.0.0.1:1", "WALMQ_SOCKET": "/s.sock", "WALMQ_LOG_LEVEL": "debug"},
			want: config{DataDir: "d", Listen: "127.0.0.1:1", Socket: "/s.sock", LogLevel: hclog.Debug}},
		{name: "flags win over the environment",
			env:  map[string]string{"WALMQ_DATA": "d", "WALMQ_LISTEN": "127.0.0.1:1", "WALMQ_SOCKET": "/s.sock", "WALMQ_LOG_LEVEL": "debug"},
			args: []string{"--data", "e", "--listen", "127.0.0.1:2", "--socket", "/t.sock", "--log-level", "WARN"},
			want: config{DataDir: "e", Listen: "127.0.0.1:2", Socket: "/t.sock", LogLevel: hclog.Warn}},
		{name: "data from the environment, socket default", env: map[string]string{"WALMQ_DATA": "d"},
			want: config{DataDir: "d", Listen: "127.0.0.1:7420", Socket: "d/walmq.sock", LogLevel: hclog.Info}},
		{name: "no socket", args: []string{"--socket", ""},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "", LogLevel: hclog.Info}},
		{name: "no tcp", args: []string{"--listen="},
			want: config{DataDir: "data", Listen: "", Socket: "data/walmq.sock", LogLevel: hclog.Info}},
		{name: "nothing to serve on", args: []string{"--listen", "", "--socket", ""}, err: errUsage},
		{name: "bad log level", args: []string{"--log-level", "loud"}, err: errUsage},
		{name: "bad log level from the environment", env: map[string]string{"WALMQ_LOG_LEVEL": "loud"}, err: errUsage},
		{name: "empty data", args: []string{"--data", ""}, err: errUsage},
		{name: "unknown flag", args: []string{"--peers", "x"}, err: errUsage},
		{name: "argument", args: []string{"serve"}, err: errUsage},
		{name: "help", args: []string{"-h"}, err: flag.ErrHelp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
