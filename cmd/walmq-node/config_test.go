package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/journal"
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
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "socket follows data", args: []string{"--data", "/var/lib/q"},
			want: config{DataDir: "/var/lib/q", Listen: "127.0.0.1:7420", Socket: "/var/lib/q/walmq.sock", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "environment",
			env:  map[string]string{"WALMQ_DATA": "d", "WALMQ_LISTEN": "127.0.0.1:1", "WALMQ_SOCKET": "/s.sock", "WALMQ_LOG_LEVEL": "debug"},
			want: config{DataDir: "d", Listen: "127.0.0.1:1", Socket: "/s.sock", LogLevel: hclog.Debug, NodeID: "node1"}},
		{name: "flags win over the environment",
			env:  map[string]string{"WALMQ_DATA": "d", "WALMQ_LISTEN": "127.0.0.1:1", "WALMQ_SOCKET": "/s.sock", "WALMQ_LOG_LEVEL": "debug"},
			args: []string{"--data", "e", "--listen", "127.0.0.1:2", "--socket", "/t.sock", "--log-level", "WARN"},
			want: config{DataDir: "e", Listen: "127.0.0.1:2", Socket: "/t.sock", LogLevel: hclog.Warn, NodeID: "node1"}},
		{name: "data from the environment, socket default", env: map[string]string{"WALMQ_DATA": "d"},
			want: config{DataDir: "d", Listen: "127.0.0.1:7420", Socket: "d/walmq.sock", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "no socket", args: []string{"--socket", ""},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "no tcp", args: []string{"--listen="},
			want: config{DataDir: "data", Listen: "", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "nothing to serve on", args: []string{"--listen", "", "--socket", ""}, err: errUsage},
		{name: "bad log level", args: []string{"--log-level", "loud"}, err: errUsage},
		{name: "bad log level from the environment", env: map[string]string{"WALMQ_LOG_LEVEL": "loud"}, err: errUsage},
		{name: "empty data", args: []string{"--data", ""}, err: errUsage},
		{name: "unknown flag", args: []string{"--replicas", "3"}, err: errUsage},
		{name: "cluster member",
			args: []string{"--node-id", "n2", "--data", "D2", "--listen", "127.0.0.1:7422", "--peers", "n1=127.0.0.1:7521, n2=127.0.0.1:7522,n3=127.0.0.1:7523"},
			want: config{DataDir: "D2", Listen: "127.0.0.1:7422", Socket: "D2/walmq.sock", LogLevel: hclog.Info, NodeID: "n2",
				RaftAddr: "127.0.0.1:7522", Peers: []walmq.Peer{{ID: "n1", Addr: "127.0.0.1:7521"}, {ID: "n2", Addr: "127.0.0.1:7522"}, {ID: "n3", Addr: "127.0.0.1:7523"}}}},
		{name: "cluster member from the environment, raft address given",
			env: map[string]string{"WALMQ_NODE_ID": "n1", "WALMQ_PEERS": "n1=10.0.0.1:7521", "WALMQ_RAFT_ADDR": "0.0.0.0:7521", "WALMQ_RAFT_ADVERTISE": "10.0.0.1:7521", "WALMQ_ADVERTISE": "10.0.0.1:7420"},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "n1",
				RaftAddr: "0.0.0.0:7521", RaftAdvertise: "10.0.0.1:7521", Advertise: "10.0.0.1:7420", Peers: []walmq.Peer{{ID: "n1", Addr: "10.0.0.1:7521"}}}},
		{name: "peers without this node", args: []string{"--node-id", "n4", "--peers", "n1=127.0.0.1:7521"}, err: errUsage},
		{name: "peer without address", args: []string{"--peers", "node1"}, err: errUsage},
		{name: "peer with a bad address", args: []string{"--peers", "node1=localhost"}, err: errUsage},
		{name: "repeated peer", args: []string{"--peers", "node1=127.0.0.1:1,node1=127.0.0.1:2"}, err: errUsage},
		{name: "storage flags", args: []string{"--segment-bytes", "65536", "--scrub-interval", "1m"},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1",
				SegmentBytes: 65536, ScrubInterval: time.Minute}},
		{name: "storage from the environment, no periodic scrub", env: map[string]string{"WALMQ_SEGMENT_BYTES": "1048576", "WALMQ_SCRUB_INTERVAL": "0"},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1",
				SegmentBytes: 1 << 20, ScrubInterval: -1}},
		{name: "leader writes its log before replicating", args: []string{"--leader-log", "sync"},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1",
				SyncLeaderLog: true}},
		{name: "leader log mode from the environment", env: map[string]string{"WALMQ_LEADER_LOG": "parallel"},
			want: config{DataDir: "data", Listen: "127.0.0.1:7420", Socket: "data/walmq.sock", LogLevel: hclog.Info, NodeID: "node1"}},
		{name: "bad leader log mode", args: []string{"--leader-log", "async"}, err: errUsage},
		{name: "zero segment bytes", args: []string{"--segment-bytes", "0"}, err: errUsage},
		{name: "segment bytes not a number", args: []string{"--segment-bytes", "64M"}, err: errUsage},
		{name: "negative scrub interval", args: []string{"--scrub-interval", "-1h"}, err: errUsage},
		{name: "empty node id", args: []string{"--node-id", ""}, err: errUsage},
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
			if tc.want.SegmentBytes == 0 {
				tc.want.SegmentBytes = journal.DefaultSegmentBytes
			}
			switch tc.want.ScrubInterval {
			case 0:
				tc.want.ScrubInterval = cluster.DefaultScrubInterval
			case -1:
				tc.want.ScrubInterval = 0 // written as -1 above: "0" given
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
