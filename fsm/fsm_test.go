package fsm_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/fsm/snapstore"
	"github.com/walmq/walmq/journal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// machine drives an FSM with commands at increasing Raft indexes.
type machine struct {
	t     testing.TB
	f     *fsm.FSM
	index uint64
}

func newMachine(t testing.TB, dir string) *machine {
	t.Helper()
	f, err := fsm.New(fsm.Options{Dir: dir, Journal: journal.Options{SegmentBytes: 2 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &machine{t: t, f: f}
}

func (m *machine) apply(cmd any) any {
	m.t.Helper()
	data, err := fsm.Encode(cmd)
	if err != nil {
		m.t.Fatal(err)
	}
	m.index++
	return m.f.Apply(&raft.Log{Index: m.index, Type: raft.LogCommand, Data: data})
}

func (m *machine) ok(cmd any) any {
	m.t.Helper()
	res := m.apply(cmd)
	if err, isErr := res.(error); isErr {
		m.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func msgs(prefix string, n int, withID bool) []journal.Message {
	out := make([]journal.Message, n)
	for i := range out {
		out[i] = journal.Message{Key: []byte(fmt.Sprint(i)), Payload: []byte(fmt.Sprintf("%s-%d", prefix, i))}
		if withID {
			out[i].ID = fmt.Sprintf("%s-id-%d", prefix, i)
		}
	}
	return out
}

// state is everything observable of an FSM, for comparison.
type state struct {
	Topics   []fsm.TopicInfo
	Messages map[string][][]string
	Groups   map[string][]string
}

func observe(t testing.TB, f *fsm.FSM) state {
	t.Helper()
	s := state{Messages: map[string][][]string{}, Groups: map[string][]string{}}
	for _, name := range f.TopicNames() {
		ti, err := f.Topic(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ti.Partitions {
			ti.Partitions[i].Bytes, ti.Partitions[i].Segments = 0, 0 // layout may differ
		}
		s.Topics = append(s.Topics, ti)
		parts := make([][]string, len(ti.Partitions))
		for i, pi := range ti.Partitions {
			p, err := f.Partition(name, i)
			if err != nil {
				t.Fatal(err)
			}
			for off := pi.First; off < pi.Next; {
				ms, err := p.Read(off, 100, 0)
				if err != nil || len(ms) == 0 {
					t.Fatalf("read %s/%d at %d: %d, %v", name, i, off, len(ms), err)
				}
				for _, m := range ms {
					parts[i] = append(parts[i], fmt.Sprintf("%d:%s:%s:%v", m.Offset, m.ID, m.Payload, m.Headers))
				}
				off = ms[len(ms)-1].Offset + 1
			}
			for _, g := range p.Groups() {
				floor, settled, err := p.GroupState(g)
				if err != nil {
					t.Fatal(err)
				}
				s.Groups[name] = append(s.Groups[name], fmt.Sprintf("%d/%s floor %d settled %v", i, g, floor, settled))
			}
		}
		s.Messages[name] = parts
	}
	return s
}

// build applies a history with every kind of command.
func build(m *machine) {
	m.ok(&fsm.CreateTopic{Name: "orders", Config: fsm.TopicConfig{Partitions: 3, DedupWindow: time.Hour}})
	m.ok(&fsm.CreateTopic{Name: "gone", Config: fsm.TopicConfig{Partitions: 1}})
	for round := 0; round < 20; round++ {
		for p := 0; p < 3; p++ {
			m.ok(&fsm.Publish{Topic: "orders", Partition: p, Timestamp: int64(round), Messages: msgs(fmt.Sprintf("r%d-p%d", round, p), 10, round%2 == 0)})
		}
	}
	// On a topic without dedup: a refused publish, then stored ones. The
	// replay must not count the refused one.
	m.ok(&fsm.CreateTopic{Name: "plain", Config: fsm.TopicConfig{Partitions: 1}})
	if _, refused := m.apply(&fsm.Publish{Topic: "plain", Messages: []journal.Message{{Payload: make([]byte, fsm.DefaultMaxMessageBytes+1)}}}).(error); !refused {
		m.t.Fatal("oversized publish accepted")
	}
	m.ok(&fsm.Publish{Topic: "plain", Timestamp: 5, Messages: msgs("plain", 3, false)})
	m.ok(&fsm.CreateGroup{Topic: "orders", Group: "billing", Config: fsm.GroupConfig{AckWait: time.Second, MaxDeliver: 2}, Start: []uint64{0, 0, 0}})
	m.ok(&fsm.CreateGroup{Topic: "orders", Group: "audit", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{100, 200, 50}})
	m.ok(&fsm.Settle{Topic: "orders", Group: "billing", Offsets: map[int][]uint64{0: {0, 1, 2, 5, 9}, 2: {3}}})
	m.ok(&fsm.DeleteTopic{Name: "gone"})
	m.ok(&fsm.Retention{Topic: "orders", Before: []uint64{60, 0, 0}})
	m.ok(&fsm.DeadLetter{Topic: "orders", Group: "billing", Partition: 1, Offset: 4, Deliveries: 2, Reason: "poison", Timestamp: 99,
		Message: journal.Message{Payload: []byte("bad")}})
	m.ok(&fsm.Member{ID: "n1", ClientAddr: "127.0.0.1:7421"})
	m.ok(&fsm.Member{ID: "n2", ClientAddr: "127.0.0.1:7422"})
	m.ok(&fsm.Member{ID: "n2"}) // forgotten
}

func digests(t testing.TB, f *fsm.FSM, topic string, n int) []fsm.PartitionDigest {
	t.Helper()
	var out []fsm.PartitionDigest
	for p := range n {
		d, err := f.Digest(topic, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestSnapshotRestoredIntoEmptyNodeEqualsLive(t *testing.T) {
	live := newMachine(t, filepath.Join(t.TempDir(), "topics"))
	build(live)
	want := observe(t, live.f)
	if len(want.Topics) != 3 { // orders, plain and the dead-letter topic
		t.Fatalf("live state has topics %+v", want.Topics)
	}

	wantDigests := digests(t, live.f, "orders", 3)
	for _, d := range wantDigests {
		if d.Upto != 200 || d.Messages != d.Upto-d.First || d.CRC32C == 0 {
			t.Fatalf("digests %+v", wantDigests)
		}
	}
	if wantDigests[0].CRC32C == wantDigests[1].CRC32C {
		t.Fatalf("different partitions, same digest: %+v", wantDigests)
	}
	snap, err := live.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store, err := snapstore.New(filepath.Join(t.TempDir(), "snaps"), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, live.index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	// The live node goes on; the snapshot must not change.
	live.ok(&fsm.Publish{Topic: "orders", Partition: 0, Timestamp: 100, Messages: msgs("after", 5, false)})

	for _, mode := range []string{"local reader", "stream"} {
		t.Run(mode, func(t *testing.T) {
			metas, err := store.List()
			if err != nil || len(metas) != 1 {
				t.Fatalf("List: %v %v", metas, err)
			}
			_, rc, err := store.Open(metas[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			var src = rc
			if mode == "stream" {
				// Through the byte stream, as a follower receives it.
				pr, pw := newPipe()
				go func() { pw.CloseWithError(copyAll(pw, rc)); rc.Close() }()
				src = pr
			}
			fresh := newMachine(t, filepath.Join(t.TempDir(), "topics"))
			if err := fresh.f.Restore(src); err != nil {
				t.Fatal(err)
			}
			if got := observe(t, fresh.f); !reflect.DeepEqual(got, want) {
				t.Fatalf("restored state differs\n got %+v\nwant %+v", got, want)
			}
			if got := digests(t, fresh.f, "orders", 3); !reflect.DeepEqual(got, wantDigests) {
				t.Fatalf("restored digests %+v, want %+v", got, wantDigests)
			}
			if a, b := fresh.f.ClientAddr("n1"), fresh.f.ClientAddr("n2"); a != "127.0.0.1:7421" || b != "" {
				t.Fatalf("restored members: n1 %q n2 %q", a, b)
			}
			if fresh.f.AppliedIndex() != live.index-1 {
				t.Fatalf("applied index %d, want %d", fresh.f.AppliedIndex(), live.index-1)
			}
			// The dedup window came along: a repeat of an id is a duplicate.
			fresh.index = live.index
			res := fresh.ok(&fsm.Publish{Topic: "orders", Partition: 1, Timestamp: 101, Messages: msgs("r0-p1", 1, true)}).(*fsm.PublishResult)
			if !res.Duplicate[0] || res.Offsets[0] != 0 {
				t.Fatalf("dedup after restore: %+v", res)
			}
		})
	}
}

// TestReplayIsIdempotent applies a history, then replays it from the
// start on a fresh state machine over the same journals, as a restart
// without a snapshot does: the journals must not change.
func TestReplayIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topics")
	first := newMachine(t, dir)
	build(first)
	want := observe(t, first.f)
	first.f.Close()

	again := newMachine(t, dir)
	build(again)
	if got := observe(t, again.f); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed state differs\n got %+v\nwant %+v", got, want)
	}
}

func TestRefusedCommandsChangeNothing(t *testing.T) {
	m := newMachine(t, filepath.Join(t.TempDir(), "topics"))
	m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 2}})
	m.ok(&fsm.Publish{Topic: "t", Partition: 0, Messages: msgs("a", 3, false)})
	m.ok(&fsm.CreateGroup{Topic: "t", Group: "g", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{0, 0}})
	before := observe(t, m.f)
	tests := []struct {
		name string
		cmd  any
		want error
	}{
		{"bad topic name", &fsm.CreateTopic{Name: "../x", Config: fsm.TopicConfig{Partitions: 1}}, fsm.ErrInvalidName},
		{"zero partitions", &fsm.CreateTopic{Name: "x", Config: fsm.TopicConfig{}}, fsm.ErrInvalidConfig},
		{"topic exists", &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}}, fsm.ErrTopicExists},
		{"publish unknown topic", &fsm.Publish{Topic: "x", Messages: msgs("a", 1, false)}, fsm.ErrTopicNotFound},
		{"publish bad partition", &fsm.Publish{Topic: "t", Partition: 2, Messages: msgs("a", 1, false)}, fsm.ErrPartitionRange},
		{"publish nothing", &fsm.Publish{Topic: "t"}, fsm.ErrEmptyPublish},
		{"message too large", &fsm.Publish{Topic: "t", Messages: []journal.Message{{Payload: make([]byte, fsm.DefaultMaxMessageBytes+1)}}}, fsm.ErrMessageTooLarge},
		{"settle unknown group", &fsm.Settle{Topic: "t", Group: "x", Offsets: map[int][]uint64{0: {0}}}, fsm.ErrGroupNotFound},
		{"settle bad partition", &fsm.Settle{Topic: "t", Group: "g", Offsets: map[int][]uint64{0: {0}, 5: {1}}}, fsm.ErrPartitionRange},
		{"group exists", &fsm.CreateGroup{Topic: "t", Group: "g", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{0, 0}}, fsm.ErrGroupExists},
		{"group bad ack wait", &fsm.CreateGroup{Topic: "t", Group: "h", Start: []uint64{0, 0}}, fsm.ErrInvalidConfig},
		{"group start count", &fsm.CreateGroup{Topic: "t", Group: "h", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{0}}, fsm.ErrBadCommand},
		{"reset unknown group", &fsm.ResetGroup{Topic: "t", Group: "x", Offsets: []uint64{0, 0}}, fsm.ErrGroupNotFound},
		{"update partitions", &fsm.UpdateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 3}}, fsm.ErrInvalidConfig},
		{"retention count", &fsm.Retention{Topic: "t", Before: []uint64{1}}, fsm.ErrBadCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := m.apply(tc.cmd)
			if err, _ := res.(error); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", res, tc.want)
			}
		})
	}
	if after := observe(t, m.f); !reflect.DeepEqual(after, before) {
		t.Fatalf("state changed\n%+v\n%+v", before, after)
	}
	if res := m.f.Apply(&raft.Log{Index: m.index + 1, Type: raft.LogCommand, Data: []byte{0xee, 1, 2}}); !errors.Is(res.(error), fsm.ErrBadCommand) {
		t.Fatalf("garbage command: %v", res)
	}
}

// TestStorageErrorStopsTheMachine: a journal that cannot be written makes
// Apply fail loudly, and every later entry is refused.
func TestStorageErrorStopsTheMachine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topics")
	var fatal error
	f, err := fsm.New(fsm.Options{Dir: dir, OnFatal: func(err error) { fatal = err }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := &machine{t: t, f: f}
	m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	m.ok(&fsm.Publish{Topic: "t", Messages: msgs("a", 1, false)})
	// Close the journal under the state machine: its next append fails.
	p, _ := f.Partition("t", 0)
	p.Journal().Close()
	res := m.apply(&fsm.Publish{Topic: "t", Messages: msgs("b", 1, false)})
	if err, _ := res.(error); !errors.Is(err, fsm.ErrFailed) || fatal == nil {
		t.Fatalf("apply on a broken journal: %v (OnFatal %v)", res, fatal)
	}
	res = m.apply(&fsm.CreateTopic{Name: "u", Config: fsm.TopicConfig{Partitions: 1}})
	if err, _ := res.(error); !errors.Is(err, fsm.ErrFailed) {
		t.Fatalf("apply after failure: %v", res)
	}
	if _, err := f.Snapshot(); !errors.Is(err, fsm.ErrFailed) {
		t.Fatalf("snapshot after failure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "u")); !os.IsNotExist(err) {
		t.Fatal("a command after the failure was applied")
	}
}

// TestLoadLocalAfterDelete: a node snapshots, then deletes a topic (and in
// one case creates it again), then crashes before the next snapshot. On
// restart the journal of the snapshot's topic is gone or belongs to the
// new incarnation: the restart must succeed and the replay end in the
// state before the crash.
func TestLoadLocalAfterDelete(t *testing.T) {
	for _, recreate := range []bool{false, true} {
		t.Run(fmt.Sprintf("recreate=%v", recreate), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "topics")
			m := newMachine(t, dir)
			m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
			m.ok(&fsm.Publish{Topic: "t", Messages: msgs("a", 5, false)})
			store, err := snapstore.New(filepath.Join(t.TempDir(), "snaps"), 2, nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := m.f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sink, _ := store.Create(raft.SnapshotVersionMax, m.index, 1, raft.Configuration{}, 1, nil)
			if err := snap.Persist(sink); err != nil {
				t.Fatal(err)
			}
			snap.Release()
			after := []any{&fsm.DeleteTopic{Name: "t"}}
			if recreate {
				after = append(after, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}},
					&fsm.Publish{Topic: "t", Messages: msgs("b", 2, false)})
			}
			for _, c := range after {
				m.ok(c)
			}
			want := observe(t, m.f)
			snapIndex := m.index - uint64(len(after))
			m.f.Close() // the crash: no snapshot after the delete

			again := newMachine(t, dir)
			metas, _ := store.List()
			_, rc, err := store.Open(metas[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := snapstore.AsReader(rc)
			if err := again.f.LoadLocal(r); err != nil {
				t.Fatalf("restart: %v", err)
			}
			rc.Close()
			again.index = snapIndex
			for _, c := range after {
				again.ok(c)
			}
			if got := observe(t, again.f); !reflect.DeepEqual(got, want) {
				t.Fatalf("after replay\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestLoadLocalRefusesLostData: a journal of the snapshot's own topic that
// holds less than the snapshot is lost data, and the restart refuses.
func TestLoadLocalRefusesLostData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topics")
	m := newMachine(t, dir)
	m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	m.ok(&fsm.Publish{Topic: "t", Messages: msgs("a", 5, false)})
	store, _ := snapstore.New(filepath.Join(t.TempDir(), "snaps"), 2, nil)
	snap, _ := m.f.Snapshot()
	sink, _ := store.Create(raft.SnapshotVersionMax, m.index, 1, raft.Configuration{}, 1, nil)
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	m.f.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "t", "0", "*.seg"))
	for _, s := range segs { // a new, empty file: the snapshot keeps its link to the old one
		os.Remove(s)
		os.WriteFile(s, nil, 0o644)
	}
	again := newMachine(t, dir)
	metas, _ := store.List()
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, _ := snapstore.AsReader(rc)
	if err := again.f.LoadLocal(r); err == nil {
		t.Fatal("restart over a journal that lost data succeeded")
	}
}

// TestSettleIgnoresOffsetsBeyondTheLog: a settle of an offset the log has
// not reached is ignored the same way at the first apply and in a replay
// over a journal that already holds more.
func TestSettleIgnoresOffsetsBeyondTheLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topics")
	history := []any{
		&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}},
		&fsm.CreateGroup{Topic: "t", Group: "g", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{0}},
		&fsm.Publish{Topic: "t", Messages: msgs("a", 3, false)},
		&fsm.Settle{Topic: "t", Group: "g", Offsets: map[int][]uint64{0: {0, 3}}}, // 3 is not in the log yet
		&fsm.Publish{Topic: "t", Messages: msgs("b", 3, false)},
	}
	first := newMachine(t, dir)
	for _, c := range history {
		first.ok(c)
	}
	want := observe(t, first.f)
	first.f.Close()
	again := newMachine(t, dir)
	for _, c := range history {
		again.ok(c)
	}
	if got := observe(t, again.f); !reflect.DeepEqual(got, want) {
		t.Fatalf("replay differs\n got %+v\nwant %+v", got.Groups, want.Groups)
	}
	if g := want.Groups["t"]; len(g) != 1 || g[0] != "0/g floor 1 settled []" {
		t.Fatalf("group state %v", g)
	}
}

func TestDeadLetterAtTheSizeLimit(t *testing.T) {
	m := newMachine(t, filepath.Join(t.TempDir(), "topics"))
	m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	big := journal.Message{Payload: make([]byte, fsm.DefaultMaxMessageBytes)}
	m.ok(&fsm.Publish{Topic: "t", Messages: []journal.Message{big}})
	m.ok(&fsm.CreateGroup{Topic: "t", Group: "g", Config: fsm.GroupConfig{AckWait: time.Second, MaxDeliver: 1}, Start: []uint64{0}})
	m.ok(&fsm.DeadLetter{Topic: "t", Group: "g", Offset: 0, Deliveries: 1, Reason: "poison", Message: big})
	p, _ := m.f.Partition("t", 0)
	if floor, _, _ := p.GroupState("g"); floor != 1 {
		t.Fatalf("floor %d after dead-lettering", floor)
	}
	ti, err := m.f.Topic("t.g.dlq")
	if err != nil || ti.Partitions[0].Next != 1 {
		t.Fatalf("dead-letter topic: %+v %v", ti, err)
	}
}

// TestDuplicatesInsideABatch: a batch whose messages repeat an earlier
// id, or each other's, stores only the first of each id, in order; a
// batch without repeats is stored whole.
func TestDuplicatesInsideABatch(t *testing.T) {
	m := newMachine(t, filepath.Join(t.TempDir(), "topics"))
	m.ok(&fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1, DedupWindow: time.Hour}})
	m.ok(&fsm.Publish{Topic: "t", Timestamp: 1, Messages: []journal.Message{{ID: "a", Payload: []byte("a1")}}})
	batch := []journal.Message{
		{ID: "b", Payload: []byte("b1")},
		{ID: "a", Payload: []byte("a2")}, // repeats the first batch
		{ID: "c", Payload: []byte("c1")},
		{ID: "c", Payload: []byte("c2")}, // repeats this batch
		{Payload: []byte("no id")},
	}
	res := m.ok(&fsm.Publish{Topic: "t", Timestamp: 2, Messages: batch}).(*fsm.PublishResult)
	wantOffs := []uint64{1, 0, 2, 2, 3}
	wantDup := []bool{false, true, false, true, false}
	if !reflect.DeepEqual(res.Offsets, wantOffs) || !reflect.DeepEqual(res.Duplicate, wantDup) {
		t.Fatalf("offsets %v duplicate %v, want %v %v", res.Offsets, res.Duplicate, wantOffs, wantDup)
	}
	if batch[1].Payload == nil || string(batch[3].Payload) != "c2" {
		t.Fatal("the state machine changed the command's messages")
	}
	m.ok(&fsm.Publish{Topic: "t", Timestamp: 3, Messages: []journal.Message{{ID: "d", Payload: []byte("d1")}, {ID: "e", Payload: []byte("e1")}}})
	got := observe(t, m.f).Messages["t"][0]
	want := []string{"0:a:a1:[]", "1:b:b1:[]", "2:c:c1:[]", "3::no id:[]", "4:d:d1:[]", "5:e:e1:[]"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored %q, want %q", got, want)
	}
}
