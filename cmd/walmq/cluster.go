package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/walmq/walmq"
)

// defaultTimeout is the --timeout run sets when none is given.
const defaultTimeout = 10 * time.Second

// memberTimeout bounds connecting to one member and asking its status.
const memberTimeout = 3 * time.Second

// joinTimeout is how long cluster join waits for the member to catch up
// when --timeout is not given.
const joinTimeout = 10 * time.Minute

// dialAddr connects to the node at addr (a member's client address) with
// timeout as the bound on connecting.
func (a *app) dialAddr(ctx context.Context, addr string, timeout time.Duration) (*walmq.Client, error) {
	b := *a
	b.server, b.timeout = addr, timeout
	return b.dial(ctx)
}

// memberConn is a member of the cluster and a connection to it (or why
// there is none).
type memberConn struct {
	walmq.NodeMember
	c   *walmq.Client
	err error
}

// dialMembers connects to every member at the client address it
// announced, concurrently, each within timeout, and checks that it is the
// member it is said to be. Close the connections with closeMembers.
func (a *app) dialMembers(ctx context.Context, ms []walmq.NodeMember, timeout time.Duration) []*memberConn {
	out := make([]*memberConn, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		mc := &memberConn{NodeMember: m}
		out[i] = mc
		if m.ClientAddr == "" {
			mc.err = errors.New("it has not announced its client address")
			continue
		}
		wg.Go(func() {
			mc.c, mc.err = a.dialAddr(ctx, m.ClientAddr, timeout)
		})
	}
	wg.Wait()
	return out
}

func closeMembers(ms []*memberConn) {
	for _, m := range ms {
		if m.c != nil {
			m.c.Close()
		}
	}
}

// clusterStatusJSON is the output of cluster status --json.
type clusterStatusJSON struct {
	NodeID       string             `json:"node_id"`
	Role         string             `json:"role"`
	Leader       string             `json:"leader"`
	Term         uint64             `json:"term"`
	AppliedIndex uint64             `json:"applied_index"`
	Members      []memberStatusJSON `json:"members"`
}

// memberStatusJSON is one member: as the node asked sees it (id,
// addresses, suffrage, leader) and as it reports itself (role, term,
// applied index), or why it could not be asked.
type memberStatusJSON struct {
	ID            string `json:"id"`
	RaftAddress   string `json:"raft_address"`
	ClientAddress string `json:"client_address"`
	Suffrage      string `json:"suffrage"`
	Leader        bool   `json:"leader"`
	Reachable     bool   `json:"reachable"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	AppliedIndex  uint64 `json:"applied_index"`
	Error         string `json:"error,omitempty"`
}

const clusterStatusHelp = `Asks the node at --server for the cluster's members, then asks each
member, at the client address it announced, for its own status (within
3 s each). The table shows each member's Raft and client addresses and
suffrage as the node at --server knows them, and the ROLE, TERM and
APPLIED index the member itself reports ("unreachable" when it does not
answer; why is printed on standard error).

With --json the output is one JSON object:

  {"node_id":"n1","role":"follower","leader":"n2","term":3,"applied_index":42,
   "members":[{"id":"n1","raft_address":"...","client_address":"...",
     "suffrage":"voter","leader":false,"reachable":true,"role":"follower",
     "term":3,"applied_index":42}, ...]}

An unreachable member has "reachable":false, "role":"unreachable" and an
"error".
`

func clusterStatus(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	asJSON := fs.Bool("json", false, "print one JSON object")
	return func(ctx context.Context, a *app, _ []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			st, err := a.status(ctx, c)
			if err != nil {
				return err
			}
			members := a.dialMembers(ctx, st.Members, min(a.timeout, memberTimeout))
			defer closeMembers(members)
			out := clusterStatusJSON{NodeID: st.NodeID, Role: st.Role, Leader: st.Leader, Term: st.Term,
				AppliedIndex: st.AppliedIndex, Members: make([]memberStatusJSON, len(members))}
			var wg sync.WaitGroup
			for i, m := range members {
				ms := &out.Members[i]
				*ms = memberStatusJSON{ID: m.ID, RaftAddress: m.Address, ClientAddress: m.ClientAddr, Suffrage: m.Suffrage,
					Leader: m.Leader, Role: "unreachable"}
				if m.err != nil {
					ms.Error = m.err.Error()
					continue
				}
				wg.Go(func() {
					sctx, cancel := context.WithTimeout(ctx, min(a.timeout, memberTimeout))
					defer cancel()
					own, err := m.c.Status(sctx)
					switch {
					case err != nil:
						ms.Error = err.Error()
					case own.NodeID != m.ID:
						ms.Error = fmt.Sprintf("the node at %s is %s, not %s", m.ClientAddr, own.NodeID, m.ID)
					default:
						ms.Reachable, ms.Role, ms.Term, ms.AppliedIndex = true, own.Role, own.Term, own.AppliedIndex
					}
				})
			}
			wg.Wait()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if *asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetEscapeHTML(false)
				return enc.Encode(out)
			}
			tw := table(a.stdout)
			nodeHeader(tw, st)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			tw = table(a.stdout)
			fmt.Fprintln(tw, "ID\tRAFT-ADDRESS\tCLIENT-ADDRESS\tSUFFRAGE\tROLE\tTERM\tAPPLIED")
			for _, m := range out.Members {
				term, applied := "-", "-"
				if m.Reachable {
					term, applied = fmt.Sprint(m.Term), fmt.Sprint(m.AppliedIndex)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, dash(m.RaftAddress), dash(m.ClientAddress), m.Suffrage, m.Role, term, applied)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, m := range out.Members {
				if m.Error != "" {
					fmt.Fprintf(a.stderr, "walmq: member %s is unreachable: %s\n", m.ID, strings.TrimPrefix(m.Error, "walmq: "))
				}
			}
			return nil
		})
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const clusterJoinHelp = `Adds the server ID, whose Raft listens on RAFT-ADDR (host:port), to the
cluster. The server must already run, with that --node-id and
--raft-addr. It joins as a non-voter and receives the log; once it has
caught up with the leader's log as of the join, the leader promotes it to
voter, and the command returns. --timeout bounds that wait (default 10m
for this command). If it ends first, the server stays a non-voter: run
the same join again to promote it. With --non-voter it stays a non-voter
(it receives the log but does not vote) and the command returns at once.
`

func clusterJoin(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	nonVoter := fs.Bool("non-voter", false, "leave the server a non-voter: do not promote it")
	return func(ctx context.Context, a *app, args []string) error {
		id, raftAddr := args[0], args[1]
		if _, _, err := net.SplitHostPort(raftAddr); err != nil {
			return usagef("RAFT-ADDR %q is not host:port: %v", raftAddr, err)
		}
		wait := a.timeout
		if !flagSet(fs, "timeout") && a.timeout == defaultTimeout {
			wait = joinTimeout
		}
		return a.withClient(ctx, func(c *walmq.Client) error {
			if *nonVoter {
				fmt.Fprintf(a.stdout, "adding %s (raft %s) as a non-voter\n", id, raftAddr)
			} else {
				fmt.Fprintf(a.stdout, "adding %s (raft %s): waiting up to %s for it to catch up with the leader's log, then promoting it to voter\n",
					id, raftAddr, wait)
			}
			jctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			if err := c.JoinMember(jctx, id, raftAddr, *nonVoter); err != nil {
				if errors.Is(err, walmq.ErrTimeout) && !*nonVoter {
					return fmt.Errorf("%w\n%s may have joined as a non-voter without catching up yet: see \"walmq cluster status\", and run the join again to promote it",
						err, id)
				}
				return err
			}
			if *nonVoter {
				fmt.Fprintf(a.stdout, "%s joined as a non-voter\n", id)
			} else {
				fmt.Fprintf(a.stdout, "%s caught up and joined as a voter\n", id)
			}
			return nil
		})
	}
}

const clusterRemoveHelp = `Removes the server ID from the cluster. The leader refuses to remove a
voter when the voters left that answer it could not form a quorum (for
example removing a live voter of three while another one is down).
`

func clusterRemove(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		id := args[0]
		return a.withClient(ctx, func(c *walmq.Client) error {
			if err := a.call(ctx, func(ctx context.Context) error { return c.RemoveMember(ctx, id) }); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed %s from the cluster\n", id)
			return nil
		})
	}
}

const clusterTransferHelp = `Hands the leadership to the voter ID, or, with no ID, to the voter
whose log is the most current, and prints the new leader.
`

func clusterTransferLeader(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		id := ""
		if len(args) > 0 {
			id = args[0]
		}
		return a.withClient(ctx, func(c *walmq.Client) error {
			var leader string
			err := a.call(ctx, func(ctx context.Context) (err error) {
				leader, err = c.TransferLeader(ctx, id)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "new leader: %s\n", leader)
			return nil
		})
	}
}

const clusterVerifyHelp = `Checks that every member holds the same messages. For each topic (every
topic when none is given), the node at --server gives each partition's end
offset as the leader knows it; then every member, asked at the client
address it announced, digests each partition from its first retained
message up to that offset (waiting, within --timeout, until it holds that
much). Per partition the table shows FIRST, UPTO and MESSAGES (one value
when the members agree, else each member's), each member's CRC-32C, and
"ok" or "MISMATCH" with the reason. A partition whose first offset
differs is a mismatch too: retention may have run on some members and not
yet on others; run verify again to tell.

The exit status is 1 when a partition differs or a member does not
answer. With --json the output is one JSON object:

  {"ok":true,"members":[{"id":"n1","client_address":"...","reachable":true}],
   "topics":[{"topic":"orders","partitions":[{"partition":0,"first":0,
     "upto":12,"result":"ok","nodes":[{"id":"n1","first":0,"upto":12,
     "messages":12,"crc32c":"1a2b3c4d"}, ...]}]}]}

A partition's "first" and "upto" are the leader's first and end offsets;
each node's are those of its digest. "result" is "ok", "MISMATCH" or
"INCOMPLETE" (a member did not answer), and "problem" says why when it is
not "ok"; a node that did not answer has an "error" instead of a digest.
`

// verifyJSON is the output of cluster verify --json.
type verifyJSON struct {
	OK      bool               `json:"ok"`
	Members []verifyMemberJSON `json:"members"`
	Topics  []verifyTopicJSON  `json:"topics"`
}

type verifyMemberJSON struct {
	ID            string `json:"id"`
	ClientAddress string `json:"client_address"`
	Reachable     bool   `json:"reachable"`
	Error         string `json:"error,omitempty"`
}

type verifyTopicJSON struct {
	Topic      string                `json:"topic"`
	Partitions []verifyPartitionJSON `json:"partitions"`
}

type verifyPartitionJSON struct {
	Partition int              `json:"partition"`
	First     uint64           `json:"first"`
	Upto      uint64           `json:"upto"`
	Result    string           `json:"result"`
	Problem   string           `json:"problem,omitempty"`
	Nodes     []verifyNodeJSON `json:"nodes"`
}

// verifyNodeJSON is one member's digest of a partition, or why there is
// none.
type verifyNodeJSON struct {
	ID       string `json:"id"`
	First    uint64 `json:"first"`
	Upto     uint64 `json:"upto"`
	Messages uint64 `json:"messages"`
	CRC32C   string `json:"crc32c,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Results of a partition's check.
const (
	verifyOK         = "ok"
	verifyMismatch   = "MISMATCH"
	verifyIncomplete = "INCOMPLETE"
)

func clusterVerify(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	asJSON := fs.Bool("json", false, "print one JSON object")
	return func(ctx context.Context, a *app, args []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			st, err := a.status(ctx, c)
			if err != nil {
				return err
			}
			topics := args
			all := len(topics) == 0
			if all {
				var ts []walmq.TopicInfo
				err := a.call(ctx, func(ctx context.Context) (err error) {
					ts, err = c.Topics(ctx)
					return err
				})
				if err != nil {
					return err
				}
				for _, t := range ts {
					topics = append(topics, t.Name)
				}
			}
			members := a.dialMembers(ctx, st.Members, min(a.timeout, memberTimeout))
			defer closeMembers(members)
			out := verifyJSON{OK: true, Members: []verifyMemberJSON{}, Topics: []verifyTopicJSON{}}
			for _, m := range members {
				vm := verifyMemberJSON{ID: m.ID, ClientAddress: m.ClientAddr, Reachable: m.err == nil}
				if m.err != nil {
					vm.Error = strings.TrimPrefix(m.err.Error(), "walmq: ")
					out.OK = false
				}
				out.Members = append(out.Members, vm)
			}
			for _, topic := range topics {
				var ti walmq.TopicInfo
				err := a.call(ctx, func(ctx context.Context) (err error) {
					ti, err = c.DescribeTopic(ctx, topic)
					return err
				})
				if all && errors.Is(err, walmq.ErrTopicNotFound) {
					continue // deleted since it was listed
				}
				if err != nil {
					return err
				}
				vt := a.verifyTopic(ctx, ti, members)
				for _, p := range vt.Partitions {
					out.OK = out.OK && p.Result == verifyOK
				}
				out.Topics = append(out.Topics, vt)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if *asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else if err := printVerify(a, out); err != nil {
				return err
			}
			return verifyOutcome(out)
		})
	}
}

// verifyTopic asks every member for the digests of the topic's partitions
// up to the end offsets in ti, and compares them.
func (a *app) verifyTopic(ctx context.Context, ti walmq.TopicInfo, members []*memberConn) verifyTopicJSON {
	parts := make([]int, len(ti.Partitions))
	upto := make([]uint64, len(ti.Partitions))
	for i, p := range ti.Partitions {
		parts[i], upto[i] = p.Partition, p.NextOffset
	}
	results := make([]walmq.ChecksumResult, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.err != nil {
			errs[i] = errors.New("unreachable")
			continue
		}
		wg.Go(func() { results[i], errs[i] = a.checksum(ctx, m, ti.Name, parts, upto) })
	}
	wg.Wait()

	vt := verifyTopicJSON{Topic: ti.Name, Partitions: []verifyPartitionJSON{}}
	for _, p := range ti.Partitions {
		vp := verifyPartitionJSON{Partition: p.Partition, First: p.FirstOffset, Upto: p.NextOffset, Nodes: []verifyNodeJSON{}}
		var got []walmq.PartitionChecksum
		var missing []string
		for i, m := range members {
			vn := verifyNodeJSON{ID: m.ID}
			var pc *walmq.PartitionChecksum
			if errs[i] == nil {
				for j := range results[i].Partitions {
					if results[i].Partitions[j].Partition == p.Partition {
						pc = &results[i].Partitions[j]
					}
				}
				if pc == nil {
					errs[i] = fmt.Errorf("%s did not digest partition %d", m.ID, p.Partition)
				}
			}
			if pc == nil {
				vn.Error = strings.TrimPrefix(errs[i].Error(), "walmq: ")
				missing = append(missing, m.ID)
			} else {
				vn.First, vn.Upto, vn.Messages, vn.CRC32C = pc.First, pc.Upto, pc.Messages, fmt.Sprintf("%08x", pc.CRC32C)
				got = append(got, *pc)
			}
			vp.Nodes = append(vp.Nodes, vn)
		}
		vp.Result, vp.Problem = compareDigests(vp, got, missing)
		vt.Partitions = append(vt.Partitions, vp)
	}
	return vt
}

// compareDigests decides a partition's result from the members' digests
// (got) and the members that gave none.
func compareDigests(vp verifyPartitionJSON, got []walmq.PartitionChecksum, missing []string) (result, problem string) {
	var problems []string
	differs := func(f func(walmq.PartitionChecksum) uint64) bool {
		for _, d := range got {
			if f(d) != f(got[0]) {
				return true
			}
		}
		return false
	}
	switch {
	case len(got) == 0:
	case differs(func(d walmq.PartitionChecksum) uint64 { return d.Upto }):
		problems = append(problems, "the members digested up to different offsets")
	case differs(func(d walmq.PartitionChecksum) uint64 { return d.First }):
		problems = append(problems, "first offsets differ (retention may not have run on every member yet: run verify again)")
	case differs(func(d walmq.PartitionChecksum) uint64 { return d.Messages }):
		problems = append(problems, "message counts differ")
	case differs(func(d walmq.PartitionChecksum) uint64 { return uint64(d.CRC32C) }):
		problems = append(problems, "checksums differ")
	}
	for _, d := range got {
		if d.Upto != vp.Upto {
			problems = append(problems, fmt.Sprintf("digested up to %d, not the leader's end %d", d.Upto, vp.Upto))
			break
		}
	}
	if len(problems) > 0 {
		return verifyMismatch, strings.Join(problems, "; ")
	}
	if len(missing) > 0 {
		return verifyIncomplete, "no digest from " + strings.Join(missing, ", ")
	}
	return verifyOK, ""
}

// checksum asks one member for its digests. A member that has not yet
// applied the topic's creation says it has no such topic: it is asked
// again until it has, or the timeout passes.
func (a *app) checksum(ctx context.Context, m *memberConn, topic string, parts []int, upto []uint64) (walmq.ChecksumResult, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	for {
		res, err := m.c.Checksum(ctx, topic, parts, upto)
		if err == nil && res.NodeID != m.ID {
			err = fmt.Errorf("the node at %s is %s, not %s", m.ClientAddr, res.NodeID, m.ID)
		}
		if !errors.Is(err, walmq.ErrTopicNotFound) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// same is the one value of f over the members that gave one, or each
// member's as id=value,... when they differ.
func same(nodes []verifyNodeJSON, f func(verifyNodeJSON) uint64) string {
	var vals []string
	var first *uint64
	differ := false
	for _, n := range nodes {
		if n.Error != "" {
			continue
		}
		v := f(n)
		if first == nil {
			first = &v
		} else if v != *first {
			differ = true
		}
		vals = append(vals, fmt.Sprintf("%s=%d", n.ID, v))
	}
	switch {
	case first == nil:
		return "-"
	case differ:
		return strings.Join(vals, ",")
	}
	return fmt.Sprint(*first)
}

func printVerify(a *app, out verifyJSON) error {
	for i, t := range out.Topics {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "topic %s (%s)\n", t.Topic, plural(len(t.Partitions), "partition"))
		tw := table(a.stdout)
		fmt.Fprint(tw, "PARTITION\tFIRST\tUPTO\tMESSAGES")
		for _, m := range out.Members {
			fmt.Fprintf(tw, "\t%s", m.ID)
		}
		fmt.Fprintln(tw, "\tRESULT")
		for _, p := range t.Partitions {
			first := same(p.Nodes, func(n verifyNodeJSON) uint64 { return n.First })
			upto := same(p.Nodes, func(n verifyNodeJSON) uint64 { return n.Upto })
			msgs := same(p.Nodes, func(n verifyNodeJSON) uint64 { return n.Messages })
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s", p.Partition, first, upto, msgs)
			for _, n := range p.Nodes {
				crc := n.CRC32C
				if n.Error != "" {
					crc = "-"
					if n.Error == "unreachable" {
						crc = "unreachable"
					}
				}
				fmt.Fprintf(tw, "\t%s", crc)
			}
			result := p.Result
			if p.Problem != "" {
				result += ": " + p.Problem
			}
			fmt.Fprintf(tw, "\t%s\n", result)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(out.Topics) == 0 {
		fmt.Fprintln(a.stdout, "no topics")
	}
	if out.OK {
		parts := 0
		for _, t := range out.Topics {
			parts += len(t.Partitions)
		}
		if len(out.Topics) > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "ok: %s of %s agree on %s\n", plural(parts, "partition"), plural(len(out.Topics), "topic"),
			plural(len(out.Members), "member"))
		return nil
	}
	// Why members did not answer.
	var notes []string
	for _, m := range out.Members {
		if m.Error != "" {
			notes = append(notes, fmt.Sprintf("member %s is unreachable: %s", m.ID, m.Error))
		}
	}
	seen := map[string]bool{}
	for _, t := range out.Topics {
		for _, p := range t.Partitions {
			for _, n := range p.Nodes {
				if n.Error != "" && n.Error != "unreachable" && !seen[n.ID+n.Error] {
					seen[n.ID+n.Error] = true
					notes = append(notes, fmt.Sprintf("member %s, topic %s: %s", n.ID, t.Topic, n.Error))
				}
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(a.stdout)
		for _, n := range notes {
			fmt.Fprintln(a.stdout, n)
		}
	}
	return nil
}

// verifyOutcome is nil when every partition of every topic is ok on every
// member, else an error that counts what is not.
func verifyOutcome(out verifyJSON) error {
	parts, bad, incomplete := 0, 0, 0
	for _, t := range out.Topics {
		for _, p := range t.Partitions {
			parts++
			switch p.Result {
			case verifyMismatch:
				bad++
			case verifyIncomplete:
				incomplete++
			}
		}
	}
	var unreachable []string
	for _, m := range out.Members {
		if !m.Reachable {
			unreachable = append(unreachable, m.ID)
		}
	}
	var msgs []string
	if bad > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %s differ between members", bad, plural(parts, "partition")))
	}
	if len(unreachable) > 0 {
		msgs = append(msgs, fmt.Sprintf("unreachable: %s", strings.Join(unreachable, ", ")))
	}
	if incomplete > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %s not digested by every member", incomplete, plural(parts, "partition")))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("cluster verify failed: %s", strings.Join(msgs, "; "))
	}
	if !out.OK {
		return errors.New("cluster verify failed")
	}
	return nil
}
