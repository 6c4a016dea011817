package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walmq/walmq/cmd/internal/proctest"
	"github.com/walmq/walmq/internal/freeport"
)

// freeAddr is a free TCP port of 127.0.0.1 (free when it returns),
// outside the kernel's ephemeral range (see internal/freeport).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// clusterMember is a walmq-node process of a test cluster.
type clusterMember struct {
	id, listen, raft, data string
	*proctest.Node
}

// startCluster starts n nodes n1..nn on 127.0.0.1, bootstrapped together
// with --peers. They are stopped when the test ends.
func startCluster(t *testing.T, n int) []*clusterMember {
	t.Helper()
	dir := t.TempDir()
	var ms []*clusterMember
	var peers []string
	for i := 1; i <= n; i++ {
		m := &clusterMember{id: fmt.Sprintf("n%d", i), listen: freeAddr(t), raft: freeAddr(t), data: filepath.Join(dir, fmt.Sprintf("d%d", i))}
		ms = append(ms, m)
		peers = append(peers, m.id+"="+m.raft)
	}
	for _, m := range ms {
		m.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", m.id, "--data", m.data, "--listen", m.listen,
			"--raft-addr", m.raft, "--socket", "", "--peers", strings.Join(peers, ","))
	}
	return ms
}

// clusterStatusOf runs cluster status --json against server.
func clusterStatusOf(t *testing.T, server string) clusterStatusJSON {
	t.Helper()
	out := mustCLI(t, server, "", "cluster", "status", "--json")
	if len(lines(out)) != 1 {
		t.Fatalf("cluster status --json printed %d lines:\n%s", len(lines(out)), out)
	}
	var st clusterStatusJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("cluster status --json printed %q: %v", out, err)
	}
	return st
}

// waitStatus polls cluster status at server until ok accepts it.
func waitStatus(t *testing.T, server, what string, ok func(clusterStatusJSON) bool) clusterStatusJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := clusterStatusOf(t, server)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; the last cluster status of %s: %+v", what, server, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settled reports whether the status shows a leader and n members that
// all answer: one leader, the others followers.
func settled(n int) func(clusterStatusJSON) bool {
	return func(st clusterStatusJSON) bool {
		if st.Leader == "" || len(st.Members) != n {
			return false
		}
		leaders := 0
		for _, m := range st.Members {
			if !m.Reachable || (m.Role != "leader" && m.Role != "follower") {
				return false
			}
			if m.Role == "leader" {
				leaders++
				if m.ID != st.Leader {
					return false
				}
			}
		}
		return leaders == 1
	}
}

// member finds the member id in a status.
func member(t *testing.T, st clusterStatusJSON, id string) memberStatusJSON {
	t.Helper()
	for _, m := range st.Members {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no member %s in %+v", id, st)
	return memberStatusJSON{}
}

// verifyRows checks the tables of cluster verify: every row ok, and the
// CRC columns of the nodes named equal. It returns the rows.
func verifyRows(t *testing.T, out string, nodes []string) [][]string {
	t.Helper()
	var header []string
	var rs [][]string
	for _, l := range lines(out) {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "PARTITION":
			header = f
		case header != nil && len(f) > 0 && !strings.HasPrefix(l, "topic ") && !strings.HasPrefix(l, "ok:"):
			rs = append(rs, f)
		}
	}
	// One CRC column per node, in the order of the Raft configuration.
	if len(header) != 5+len(nodes) || !slices.Equal(header[:4], []string{"PARTITION", "FIRST", "UPTO", "MESSAGES"}) ||
		header[len(header)-1] != "RESULT" || !slices.Equal(slices.Sorted(slices.Values(header[4:len(header)-1])), slices.Sorted(slices.Values(nodes))) {
		t.Fatalf("cluster verify header %q, want PARTITION FIRST UPTO MESSAGES, a column for each of %q, RESULT:\n%s", header, nodes, out)
	}
	for _, r := range rs {
		if len(r) != len(header) || r[len(r)-1] != "ok" {
			t.Fatalf("cluster verify row %q is not ok:\n%s", r, out)
		}
		for _, crc := range r[5 : len(r)-1] {
			if crc != r[4] {
				t.Fatalf("cluster verify row %q: CRCs differ but the row says ok", r)
			}
		}
		if r[2] != "0" && r[4] == "00000000" {
			t.Fatalf("cluster verify row %q: messages digested to nothing", r)
		}
	}
	return rs
}

// TestCluster drives the cluster commands against three walmq-node
// processes: status, forwarding, verify, transfer-leader, remove and the
// quorum check.
func TestCluster(t *testing.T) {
	ms := startCluster(t, 3)
	byID := map[string]*clusterMember{}
	var ids []string
	for _, m := range ms {
		byID[m.id] = m
		ids = append(ids, m.id)
	}
	st := waitStatus(t, ms[0].listen, "a leader and three members that answer", settled(3))
	leader := byID[st.Leader]
	var followers []*clusterMember
	for _, m := range ms {
		if m != leader {
			followers = append(followers, m)
		}
	}
	t.Logf("leader %s, followers %s and %s", leader.id, followers[0].id, followers[1].id)

	if !t.Run("status", func(t *testing.T) {
		// Every node sees the same members; the table shows each as it
		// reports itself.
		for _, m := range ms {
			st := waitStatus(t, m.listen, m.id+" knows the leader", settled(3))
			if st.NodeID != m.id || st.Leader != leader.id {
				t.Fatalf("status of %s: node %s, leader %s; want %s, %s", m.id, st.NodeID, st.Leader, m.id, leader.id)
			}
			for _, o := range ms {
				mm := member(t, st, o.id)
				if mm.RaftAddress != o.raft || mm.ClientAddress != o.listen || mm.Suffrage != "voter" || mm.Leader != (o == leader) {
					t.Fatalf("%s sees %s as %+v; want raft %s, client %s, voter, leader %v", m.id, o.id, mm, o.raft, o.listen, o == leader)
				}
			}
		}
		out := mustCLI(t, followers[0].listen, "", "cluster", "status")
		for _, want := range []string{"node id:        " + followers[0].id, "role:           follower", "leader:         " + leader.id} {
			if !strings.Contains(out, want) {
				t.Fatalf("cluster status lacks %q:\n%s", want, out)
			}
		}
		rs := rows(t, out, "ID")
		if len(rs) != 3 {
			t.Fatalf("cluster status shows %d members, want 3:\n%s", len(rs), out)
		}
		roles := map[string]int{}
		for _, r := range rs {
			m := byID[r[0]]
			if len(r) != 7 || m == nil || r[1] != m.raft || r[2] != m.listen || r[3] != "voter" || atoi(t, r[5]) < 1 || atoi(t, r[6]) < 1 {
				t.Fatalf("cluster status row %q:\n%s", r, out)
			}
			if (r[4] == "leader") != (m == leader) {
				t.Fatalf("cluster status row %q: the leader is %s", r, leader.id)
			}
			roles[r[4]]++
		}
		if roles["leader"] != 1 || roles["follower"] != 2 {
			t.Fatalf("cluster status roles %v, want one leader and two followers:\n%s", roles, out)
		}
	}) {
		return
	}

	if !t.Run("forwarding", func(t *testing.T) {
		// Written through one follower, read through the other.
		pubVia, subVia := followers[0].listen, followers[1].listen
		mustCLI(t, pubVia, "", "topic", "create", "orders", "--partitions", "3")
		var in strings.Builder
		for i := range 300 {
			fmt.Fprintf(&in, "m-%03d\n", i)
		}
		acks := parseAcks(t, mustCLI(t, pubVia, in.String(), "pub", "orders", "--acks"))
		if len(acks) != 300 {
			t.Fatalf("%d acks for 300 messages", len(acks))
		}
		want := map[string]ack{}
		for _, a := range acks {
			want[a.payload] = a
		}
		msgs := parseJSON(t, mustCLI(t, subVia, "", "sub", "orders", "--group", "g", "--json", "--wait", "1s"))
		got := map[string]bool{}
		for _, m := range msgs {
			w, ok := want[m.Payload]
			if !ok || got[m.Payload] || m.Partition != w.partition || m.Offset != w.offset {
				t.Fatalf("sub via %s gave %q at %d/%d: unknown, repeated or not where it was acked (%+v)", followers[1].id, m.Payload, m.Partition, m.Offset, w)
			}
			got[m.Payload] = true
		}
		if len(got) != len(want) {
			t.Fatalf("sub via %s gave %d messages, want %d", followers[1].id, len(got), len(want))
		}
		mustCLI(t, pubVia, "", "topic", "create", "empty")
	}) {
		return
	}

	if !t.Run("verify", func(t *testing.T) {
		for _, m := range ms {
			out := mustCLI(t, m.listen, "", "cluster", "verify")
			if rs := verifyRows(t, out, ids); len(rs) != 4 {
				t.Fatalf("cluster verify via %s: %d partitions, want 4 (3 of orders, 1 of empty):\n%s", m.id, len(rs), out)
			}
			if !strings.Contains(out, "ok: 4 partitions of 2 topics agree on 3 members") {
				t.Fatalf("cluster verify via %s:\n%s", m.id, out)
			}
		}
		out := mustCLI(t, followers[1].listen, "", "cluster", "verify", "orders", "--json")
		var v verifyJSON
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("cluster verify --json printed %q: %v", out, err)
		}
		if !v.OK || len(v.Topics) != 1 || v.Topics[0].Topic != "orders" || len(v.Topics[0].Partitions) != 3 {
			t.Fatalf("cluster verify --json: %s", out)
		}
		var total uint64
		for _, p := range v.Topics[0].Partitions {
			if p.Result != "ok" || len(p.Nodes) != 3 {
				t.Fatalf("cluster verify --json partition %+v", p)
			}
			for _, n := range p.Nodes {
				if n.Upto != p.Upto || n.CRC32C != p.Nodes[0].CRC32C || n.Messages != p.Upto-p.First || n.Error != "" {
					t.Fatalf("cluster verify --json partition %d node %+v, first node %+v", p.Partition, n, p.Nodes[0])
				}
			}
			total += p.Nodes[0].Messages
		}
		if total != 300 {
			t.Fatalf("cluster verify digested %d messages of orders, want 300", total)
		}
		if r := cli(t, ms[0].listen, "", "cluster", "verify", "nosuch"); r.Code != 1 || !strings.Contains(r.Stderr, `topic not found: "nosuch"`) {
			t.Fatalf("cluster verify nosuch: exit %d, stderr %q", r.Code, r.Stderr)
		}
	}) {
		return
	}

	if !t.Run("transfer-leader", func(t *testing.T) {
		to := followers[0]
		// Asked through the other follower: forwarded to the leader.
		if out := mustCLI(t, followers[1].listen, "", "cluster", "transfer-leader", to.id); out != "new leader: "+to.id+"\n" {
			t.Fatalf("transfer-leader printed %q", out)
		}
		st := waitStatus(t, to.listen, to.id+" leads", func(st clusterStatusJSON) bool { return settled(3)(st) && st.Leader == to.id })
		if m := member(t, st, to.id); m.Role != "leader" || !m.Leader {
			t.Fatalf("after the transfer, %s is %+v", to.id, m)
		}
		if r := cli(t, to.listen, "", "cluster", "transfer-leader", "nosuch"); r.Code != 1 || !strings.Contains(r.Stderr, `unknown member: no voter "nosuch"`) {
			t.Fatalf("transfer-leader nosuch: exit %d, stderr %q", r.Code, r.Stderr)
		}
		// Writes go on through the new leader.
		mustCLI(t, leader.listen, "", "pub", "orders", "after-transfer")
		leader, followers = to, []*clusterMember{leader, followers[1]}
	}) {
		return
	}

	if !t.Run("join not running", func(t *testing.T) {
		// The join plumbing, with servers that never come: a non-voter
		// joins at once; a voter never catches up, and stays a non-voter.
		nv, v := freeAddr(t), freeAddr(t)
		out := mustCLI(t, followers[0].listen, "", "cluster", "join", "n9", nv, "--non-voter")
		if !strings.Contains(out, "adding n9 (raft "+nv+") as a non-voter\n") || !strings.HasSuffix(out, "n9 joined as a non-voter\n") {
			t.Fatalf("join --non-voter printed %q", out)
		}
		start := time.Now()
		r := cli(t, followers[0].listen, "", "cluster", "join", "n8", v, "--timeout", "2s")
		if r.Code != 1 || !strings.Contains(r.Stdout, "waiting up to 2s for it to catch up") || !strings.Contains(r.Stderr, "run the join again") {
			t.Fatalf("join of a server that is not running: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("join --timeout 2s took %v", d)
		}
		st := waitStatus(t, leader.listen, "n8 and n9 listed", func(st clusterStatusJSON) bool { return len(st.Members) == 5 })
		for _, id := range []string{"n8", "n9"} {
			if m := member(t, st, id); m.Suffrage != "nonvoter" || m.Reachable || m.Role != "unreachable" || !strings.Contains(m.Error, "not announced") {
				t.Fatalf("after its join, %s is %+v", id, m)
			}
		}
		if r := cli(t, leader.listen, "", "cluster", "verify"); r.Code != 1 || !strings.Contains(r.Stderr, "unreachable: n9, n8") {
			t.Fatalf("cluster verify with members down: exit %d, stderr %q", r.Code, r.Stderr)
		}
		for _, id := range []string{"n8", "n9"} {
			if out := mustCLI(t, followers[1].listen, "", "cluster", "remove", id); out != "removed "+id+" from the cluster\n" {
				t.Fatalf("remove %s printed %q", id, out)
			}
		}
		waitStatus(t, leader.listen, "n8 and n9 gone", settled(3))
	}) {
		return
	}

	if !t.Run("join", func(t *testing.T) {
		// A fresh node started with --join asks the cluster to add it: it
		// joins as a non-voter, catches up, and is promoted; its replicas
		// then equal the others'. It is removed again for what follows.
		n4 := &clusterMember{id: "n4", listen: freeAddr(t), raft: freeAddr(t), data: filepath.Join(t.TempDir(), "d4")}
		n4.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", n4.id, "--data", n4.data, "--listen", n4.listen,
			"--raft-addr", n4.raft, "--socket", "", "--join", followers[0].listen)
		st := waitStatus(t, leader.listen, "n4 a voter", func(st clusterStatusJSON) bool {
			return settled(4)(st) && member(t, st, "n4").Suffrage == "voter"
		})
		if m := member(t, st, "n4"); m.RaftAddress != n4.raft || m.ClientAddress != n4.listen {
			t.Fatalf("n4 joined as %+v", m)
		}
		out := mustCLI(t, n4.listen, "", "cluster", "verify")
		verifyRows(t, out, []string{"n1", "n2", "n3", "n4"})
		if out := mustCLI(t, leader.listen, "", "cluster", "remove", "n4"); out != "removed n4 from the cluster\n" {
			t.Fatalf("remove n4 printed %q", out)
		}
		waitStatus(t, leader.listen, "n4 gone", settled(3))
		n4.Kill(t)
	}) {
		return
	}

	if !t.Run("quorum", func(t *testing.T) {
		// Three voters, one down: removing a live one would leave one
		// live voter of two.
		down, other := followers[1], followers[0]
		down.Kill(t)
		// At once, before any heartbeat to it failed: the leader asks the
		// voters that would be left whether they follow it.
		r := cli(t, leader.listen, "", "cluster", "remove", other.id)
		if r.Code != 1 || !strings.HasPrefix(r.Stderr, "walmq: the change would lose the quorum") {
			t.Fatalf("remove %s right after %s was killed: exit %d, stderr %q; want the quorum refusal", other.id, down.id, r.Code, r.Stderr)
		}
		time.Sleep(time.Second) // the leader's heartbeats to it fail
		st := waitStatus(t, leader.listen, down.id+" unreachable", func(st clusterStatusJSON) bool {
			return st.Leader == leader.id && len(st.Members) == 3 && !member(t, st, down.id).Reachable
		})
		if m := member(t, st, down.id); m.Role != "unreachable" || m.Error == "" {
			t.Fatalf("the killed %s is %+v", down.id, m)
		}
		out := mustCLI(t, leader.listen, "", "cluster", "status")
		for _, r := range rows(t, out, "ID") {
			if (r[0] == down.id) != (r[4] == "unreachable") || (r[0] == down.id && (r[5] != "-" || r[6] != "-")) {
				t.Fatalf("cluster status row %q with %s down:\n%s", r, down.id, out)
			}
		}
		r = cli(t, leader.listen, "", "cluster", "verify", "orders")
		if r.Code != 1 || !strings.Contains(r.Stderr, "unreachable: "+down.id) || !strings.Contains(r.Stdout, "INCOMPLETE") {
			t.Fatalf("cluster verify with %s down: exit %d, stdout %q, stderr %q", down.id, r.Code, r.Stdout, r.Stderr)
		}
		r = cli(t, other.listen, "", "cluster", "remove", other.id)
		if r.Code != 1 || !strings.HasPrefix(r.Stderr, "walmq: the change would lose the quorum") {
			t.Fatalf("remove %s with %s down: exit %d, stderr %q; want the quorum refusal", other.id, down.id, r.Code, r.Stderr)
		}
		if st := clusterStatusOf(t, leader.listen); len(st.Members) != 3 || member(t, st, other.id).Suffrage != "voter" {
			t.Fatalf("after the refused removal: %+v", st)
		}
	}) {
		return
	}

	if !t.Run("remove", func(t *testing.T) {
		// Removing the voter that is down leaves two that answer.
		down, other := followers[1], followers[0]
		if out := mustCLI(t, other.listen, "", "cluster", "remove", down.id); out != "removed "+down.id+" from the cluster\n" {
			t.Fatalf("remove printed %q", out)
		}
		st := waitStatus(t, other.listen, down.id+" gone", settled(2))
		if st.Leader != leader.id {
			t.Fatalf("after the removal: %+v", st)
		}
		out := mustCLI(t, other.listen, "", "cluster", "verify")
		verifyRows(t, out, []string{leader.id, other.id})
		if r := cli(t, other.listen, "", "cluster", "remove", down.id); r.Code != 1 || !strings.Contains(r.Stderr, "unknown member") {
			t.Fatalf("removing %s again: exit %d, stderr %q", down.id, r.Code, r.Stderr)
		}
	}) {
		return
	}

	t.Run("two voters, one down", func(t *testing.T) {
		// With one of two voters down there is no quorum: the leader
		// steps down, and no membership change can be made.
		other := followers[0]
		other.Kill(t)
		waitStatus(t, leader.listen, leader.id+" steps down", func(st clusterStatusJSON) bool { return st.Leader == "" })
		r := cli(t, leader.listen, "", "cluster", "remove", other.id)
		if r.Code != 1 || !strings.Contains(r.Stderr, "no leader known") {
			t.Fatalf("remove %s from two voters with it down: exit %d, stderr %q", other.id, r.Code, r.Stderr)
		}
	})
}

// TestClusterUsage checks the cluster commands' usage errors (no node is
// dialled) and an unreachable node.
func TestClusterUsage(t *testing.T) {
	server := freeAddr(t) // nothing listens there
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", []string{"cluster"}, 2, "give one of: status, join, remove, transfer-leader, verify"},
		{"join without id", []string{"cluster", "join"}, 2, "missing ID"},
		{"join without address", []string{"cluster", "join", "n4"}, 2, "missing RAFT-ADDR"},
		{"join bad address", []string{"cluster", "join", "n4", "nowhere"}, 2, `RAFT-ADDR "nowhere" is not host:port`},
		{"join extra", []string{"cluster", "join", "n4", "127.0.0.1:1", "x"}, 2, `unexpected argument "x"`},
		{"remove without id", []string{"cluster", "remove"}, 2, "missing ID"},
		{"remove extra", []string{"cluster", "remove", "a", "b"}, 2, `unexpected argument "b"`},
		{"transfer extra", []string{"cluster", "transfer-leader", "a", "b"}, 2, `unexpected argument "b"`},
		{"status extra", []string{"cluster", "status", "x"}, 2, `unexpected argument "x"`},
		{"verify bad flag", []string{"cluster", "verify", "--bogus"}, 2, "flag provided but not defined"},
		{"status unreachable", []string{"cluster", "status"}, 1, "cannot reach the node at " + server},
		{"verify unreachable", []string{"cluster", "verify"}, 1, "cannot reach the node at " + server},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, server, "", tc.args...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.Code, r.Stderr, tc.code, tc.msg)
			}
			if r.Code == 2 && !strings.Contains(r.Stderr, "Usage: walmq") {
				t.Fatalf("a usage error without the usage: %q", r.Stderr)
			}
		})
	}
	if r := cli(t, server, "", "help", "cluster", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "Usage: walmq cluster verify [TOPIC...] [--json]") {
		t.Fatalf("help cluster verify: exit %d, stdout %q", r.Code, r.Stdout)
	}
}

// TestBenchThroughLeaderKill: SIGKILL of the leader in the middle of walmq
// bench --ids against the cluster's three addresses. Publishing resumes on
// the new leader (the bench reports the longest time without an ack),
// every publish that was acknowledged is consumed afterwards (checked by
// its ID), and no retry is stored twice.
func TestBenchThroughLeaderKill(t *testing.T) {
	ms := startCluster(t, 3)
	st := waitStatus(t, ms[0].listen, "a leader and three members that answer", settled(3))
	var servers []string
	var leader *clusterMember
	for _, m := range ms {
		servers = append(servers, m.listen)
		if m.id == st.Leader {
			leader = m
		}
	}
	all := strings.Join(servers, ",")
	mustCLI(t, all, "", "topic", "create", "b", "--partitions", "4")
	type outcome struct {
		r proctest.Result
	}
	done := make(chan outcome, 1)
	go func() {
		done <- outcome{cli(t, all, "", "bench", "--ids", "--topic", "b", "--n", "100000", "--producers", "8", "--window", "32", "--json")}
	}()
	time.Sleep(time.Second)
	leader.Kill(t)
	t.Logf("killed the leader %s", leader.id)
	o := <-done
	if o.r.Code != 0 {
		t.Fatalf("bench: exit %d, stderr %s", o.r.Code, o.r.Stderr)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(o.r.Stdout), &res); err != nil {
		t.Fatalf("bench printed %q: %v", o.r.Stdout, err)
	}
	t.Logf("bench through the kill: %s", o.r.Stdout)
	if res.Lost == nil || res.Distinct == nil || res.Duplicates == nil {
		t.Fatalf("bench --ids printed no ID counts: %s", o.r.Stdout)
	}
	if res.Published != 100000 || *res.Lost != 0 || *res.Distinct < res.Published-int(res.Failed) {
		t.Fatalf("published %d, failed %d, consumed %d distinct, lost %d", res.Published, res.Failed, *res.Distinct, *res.Lost)
	}
	if *res.Duplicates != 0 {
		t.Fatalf("%d messages consumed twice: a retry by ID was stored again", *res.Duplicates)
	}
	stored := 0
	for _, r := range rows(t, mustCLI(t, all, "", "topic", "describe", "b"), "PARTITION") {
		n, err := strconv.Atoi(r[2])
		if err != nil {
			t.Fatalf("topic describe row %v", r)
		}
		stored += n
	}
	if stored != *res.Distinct {
		t.Fatalf("the topic holds %d messages, bench consumed %d distinct IDs", stored, *res.Distinct)
	}
	if res.MaxAckGapMs <= 0 || res.MaxAckGapMs > 15000 {
		t.Fatalf("longest time without an ack: %.0f ms", res.MaxAckGapMs)
	}
	if res.Retried == 0 {
		t.Fatalf("no publish was retried across the leader's death: %+v", res)
	}
	// The killed node restarts and catches up: every replica equal.
	var peers []string
	for _, m := range ms {
		peers = append(peers, m.id+"="+m.raft)
	}
	leader.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", leader.id, "--data", leader.data, "--listen", leader.listen,
		"--raft-addr", leader.raft, "--socket", "", "--peers", strings.Join(peers, ","))
	waitStatus(t, all, "three members that answer", settled(3))
	// The leader retries a follower that failed with a backoff of up to
	// ~10 s (hashicorp/raft): give the restarted one time to catch up.
	deadline := time.Now().Add(45 * time.Second)
	for {
		r := cli(t, all, "", "cluster", "verify", "b")
		if r.Code == 0 {
			verifyRows(t, r.Stdout, []string{"n1", "n2", "n3"})
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster verify after the restart: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
		}
		time.Sleep(time.Second)
	}
}

// TestSingleNodeGrowsToThree: a single node holding data, restarted with a
// Raft address, grows into a three-node cluster: two fresh nodes started
// with --join catch up (through a snapshot carrying the journals) and are
// promoted; every replica then holds the same messages.
func TestSingleNodeGrowsToThree(t *testing.T) {
	dir := t.TempDir()
	n1 := &clusterMember{id: "n1", listen: freeAddr(t), raft: freeAddr(t), data: filepath.Join(dir, "d1")}
	// First as the plain single node of make run: Raft in memory.
	n1.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", "n1", "--data", n1.data, "--listen", n1.listen, "--socket", "")
	mustCLI(t, n1.listen, "", "topic", "create", "g", "--partitions", "2")
	var in strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&in, "m%d\n", i)
	}
	mustCLI(t, n1.listen, in.String(), "pub", "g")
	if r := cli(t, n1.listen, "", "cluster", "join", "n2", freeAddr(t)); r.Code != 1 || !strings.Contains(r.Stderr, "restart it with a Raft address") {
		t.Fatalf("join into a node whose Raft is in memory: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if code := n1.Stop(t); code != 0 {
		t.Fatalf("stop n1: exit %d", code)
	}
	n1.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", "n1", "--data", n1.data, "--listen", n1.listen, "--socket", "",
		"--raft-addr", n1.raft)
	ms := []*clusterMember{n1}
	for _, id := range []string{"n2", "n3"} {
		m := &clusterMember{id: id, listen: freeAddr(t), raft: freeAddr(t), data: filepath.Join(dir, id)}
		m.Node = proctest.Start(t, nodeBin, proctest.Env(), "--node-id", id, "--data", m.data, "--listen", m.listen, "--socket", "",
			"--raft-addr", m.raft, "--join", n1.listen)
		ms = append(ms, m)
	}
	st := waitStatus(t, n1.listen, "three voters", func(st clusterStatusJSON) bool {
		if !settled(3)(st) {
			return false
		}
		for _, m := range st.Members {
			if m.Suffrage != "voter" {
				return false
			}
		}
		return true
	})
	if m := member(t, st, "n1"); m.RaftAddress != n1.raft {
		t.Fatalf("n1's Raft address in the configuration: %q, want %q", m.RaftAddress, n1.raft)
	}
	rs := verifyRows(t, mustCLI(t, ms[2].listen, "", "cluster", "verify", "g"), []string{"n1", "n2", "n3"})
	total := 0
	for _, r := range rs {
		n, _ := strconv.Atoi(r[3])
		total += n
	}
	if total != 2000 {
		t.Fatalf("the replicas hold %d messages, want 2000", total)
	}
}
