package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// tlSec is s seconds in ns, the unit of Op.Time.
func tlSec(s float64) int64 { return int64(math.Round(s * 1e9)) }

// opTimeline builds a history by hand, ops in the order they are added.
type opTimeline struct{ ops []Op }

func (tl *opTimeline) add(at float64, op Op) *opTimeline {
	op.Index, op.Time = len(tl.ops), tlSec(at)
	tl.ops = append(tl.ops, op)
	return tl
}

// nemesis records a nemesis op: its invocation at from, its completion
// (typ, with value or error) at to.
func (tl *opTimeline) nemesis(from, to float64, f, node, typ, msg string) *opTimeline {
	tl.add(from, Op{Process: "nemesis", Type: Invoke, F: f})
	done := Op{Process: "nemesis", Node: node, Type: typ, F: f}
	if typ == OK {
		done.Value = msg
	} else {
		done.Error = msg
	}
	return tl.add(to, done)
}

// reportHistory is a 10 s run: three producers publish every 100 ms (5 ms
// each, all ok but one fail and one info), a partition of the leader from
// 3 s to its heal at 6.02 s, a kill that could not be injected at 7 s,
// and heal-all at 9.5 s. Its client completions: 3*100.
func reportHistory() []Op {
	tl := &opTimeline{}
	type ev struct {
		at float64
		op Op
	}
	var evs []ev
	for p := range 3 {
		proc := fmt.Sprintf("p%d", p)
		for i := range 100 {
			at := float64(i)/10 + float64(p)*0.01
			v := fmt.Sprintf("%s-%d", proc, i)
			done := Op{Process: proc, Node: "n1", Type: OK, F: FPublish, Value: v}
			lat := 0.005
			switch {
			case p == 1 && i == 40:
				done.Type, done.Error, lat = Fail, "walmq: not the leader <script>alert(1)</script>", 0.08
			case p == 2 && i == 45:
				done.Type, done.Error, lat = Info, "walmq: timeout", 0.05
			default:
				done.Partition, done.Offset = intPtr(0), uint64Ptr(uint64(i))
			}
			evs = append(evs, ev{at, Op{Process: proc, Node: "n1", Type: Invoke, F: FPublish, Value: v}}, ev{at + lat, done})
		}
	}
	// Nemesis ops, then everything in time order (stable: an invocation
	// stays before its completion).
	nem := &opTimeline{}
	nem.nemesis(3.0, 3.01, "partition-leader", "n2", OK, "isolated n2 (leader n2)").
		nemesis(6.0, 6.02, "heal", "n2", OK, "healed all links").
		nemesis(7.0, 7.5, "kill-leader", "", Info, "no leader <script>found</script>").
		nemesis(9.5, 9.6, "heal-all", "", OK, "")
	for _, op := range nem.ops {
		evs = append(evs, ev{float64(op.Time) / 1e9, op})
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return cmp.Compare(a.at, b.at) })
	for _, e := range evs {
		tl.add(e.at, e.op)
	}
	return tl.ops
}

// renderReport renders a report of ops and res, and checks that every SVG
// in it is well-formed XML and the page parses as HTML.
func renderReport(t *testing.T, ops []Op, res Result) (string, *html.Node) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteReport(&buf, "run <b>1</b>", 42, ops, res); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	rest := page
	svgs := 0
	for {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("an <svg> is not closed")
		}
		svgs++
		dec := xml.NewDecoder(strings.NewReader(rest[i : i+j+len("</svg>")]))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("svg %d is not well-formed: %v", svgs, err)
			}
		}
		rest = rest[i+j:]
	}
	if svgs != 2 {
		t.Fatalf("%d svgs, want 2", svgs)
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return page, doc
}

// htmlAttr is n's attribute key ("" if it has none).
func htmlAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// htmlFindAll returns the elements under n named tag for which match holds.
func htmlFindAll(n *html.Node, tag string, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag && (match == nil || match(n)) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

// htmlText is the text under n.
func htmlText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

func htmlHasClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return strings.Contains(" "+htmlAttr(n, "class")+" ", " "+class+" ") }
}

func TestReportPage(t *testing.T) {
	ops := reportHistory()
	res := Result{Valid: true, Attempted: 300, Acknowledged: 298, UnknownAttempts: 1, ReplicasEqual: true, ReadComplete: true}
	page, doc := renderReport(t, ops, res)

	verdict := htmlFindAll(doc, "p", htmlHasClass("verdict"))
	if len(verdict) != 1 || htmlText(verdict[0]) != "VALID" || !htmlHasClass("valid")(verdict[0]) {
		t.Fatalf("verdict: %v", verdict)
	}
	if !strings.Contains(page, "seed 42") {
		t.Error("no seed")
	}
	if !strings.Contains(page, "<title>run &lt;b&gt;1&lt;/b&gt;</title>") {
		t.Error("title not escaped")
	}
	// Every counter, listed from the JSON.
	counters := map[string]string{}
	for _, tr := range htmlFindAll(doc, "tr", nil) {
		if th, td := htmlFindAll(tr, "th", nil), htmlFindAll(tr, "td", nil); len(th) == 1 && len(td) == 1 {
			counters[htmlText(th[0])] = htmlText(td[0])
		}
	}
	for k, v := range map[string]string{"valid": "yes", "attempted": "300", "acknowledged": "298", "unknown-attempts": "1",
		"lost": "0", "replicas-equal": "yes", "read-complete": "yes"} {
		if counters[k] != v {
			t.Errorf("counter %s = %q, want %q", k, counters[k], v)
		}
	}

	// The page has no script at all: the error's "<script>" is escaped,
	// in the nemesis table, the fault's tooltip and the client errors.
	if strings.Contains(page, "<script") {
		t.Fatal("unescaped <script> in the page")
	}
	if n := strings.Count(page, "&lt;script&gt;"); n < 3 {
		t.Errorf("escaped <script> %d times, want at least 3", n)
	}

	svgs := htmlFindAll(doc, "svg", nil)
	buckets := 10 // the last op is at 9.9 s (+5 ms)
	for i, svg := range svgs {
		// The partition's window, shaded and labelled, on both plots.
		bands := htmlFindAll(svg, "g", htmlHasClass("fault"))
		if len(bands) != 2 {
			t.Fatalf("svg %d: %d fault bands, want 2", i, len(bands))
		}
		b := bands[0]
		if htmlAttr(b, "data-fault") != "partition-leader" || htmlAttr(b, "data-node") != "n2" ||
			htmlAttr(b, "data-start") != "3.000" || htmlAttr(b, "data-end") != "6.020" || htmlAttr(b, "data-injected") != "" {
			t.Errorf("svg %d: band %v", i, b.Attr)
		}
		rects := htmlFindAll(b, "rect", nil)
		if len(rects) != 1 {
			t.Fatalf("svg %d: band has %d rects", i, len(rects))
		}
		x, _ := strconv.ParseFloat(htmlAttr(rects[0], "x"), 64)
		w, _ := strconv.ParseFloat(htmlAttr(rects[0], "width"), 64)
		width := float64(plotWidth - plotLeft - plotRight)
		if math.Abs(x-(plotLeft+3.0/10*width)) > 0.1 || math.Abs(w-(3.02/10*width)) > 0.2 {
			t.Errorf("svg %d: band at x %v width %v", i, x, w)
		}
		if htmlAttr(rects[0], "fill-opacity") == "" {
			t.Errorf("svg %d: band not translucent", i)
		}
		// The kill could not be injected: a hatched marker.
		if k := bands[1]; htmlAttr(k, "data-fault") != "kill-leader" || htmlAttr(k, "data-injected") != "false" ||
			!strings.Contains(htmlAttr(htmlFindAll(k, "rect", nil)[0], "fill"), "hatch") {
			t.Errorf("svg %d: kill marker %v", i, k.Attr)
		}
		var labels []string
		for _, g := range htmlFindAll(svg, "g", htmlHasClass("fault-labels")) {
			for _, tx := range htmlFindAll(g, "text", nil) {
				labels = append(labels, htmlText(tx))
			}
		}
		if strings.Join(labels, "|") != "partition-leader n2|kill-leader (not injected)" {
			t.Errorf("svg %d: fault labels %q", i, labels)
		}
	}

	// Throughput: a line per series, a point per 1 s bucket.
	lines := map[string]int{}
	for _, pl := range htmlFindAll(svgs[0], "polyline", htmlHasClass("series")) {
		lines[htmlAttr(pl, "data-series")] = len(strings.Fields(htmlAttr(pl, "points")))
	}
	want := map[string]int{"publish ok": buckets, "fail (all f)": buckets, "info (all f)": buckets}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("throughput lines %v, want %v", lines, want)
	}

	// Latency: a point per completed op, by type.
	points := map[string]int{}
	for _, g := range htmlFindAll(svgs[1], "g", htmlHasClass("latency")) {
		points[htmlAttr(g, "data-type")] += len(htmlFindAll(g, "circle", nil))
	}
	if points[OK] != 298 || points[Fail] != 1 || points[Info] != 1 {
		t.Errorf("latency points %v, want 298 ok, 1 fail, 1 info", points)
	}
	// p50 and p99: a point per second, every second has ok ops.
	for _, name := range []string{"p50 ok", "p99 ok"} {
		pl := htmlFindAll(svgs[1], "polyline", func(n *html.Node) bool { return htmlAttr(n, "data-series") == name })
		if len(pl) != 1 || len(strings.Fields(htmlAttr(pl[0], "points"))) != buckets {
			t.Errorf("%s: %d lines", name, len(pl))
		}
	}

	// The nemesis table: a row per nemesis op.
	tables := htmlFindAll(doc, "table", htmlHasClass("nemesis"))
	if len(tables) != 1 {
		t.Fatalf("%d nemesis tables", len(tables))
	}
	if rows := htmlFindAll(tables[0], "tr", nil); len(rows) != 1+8 {
		t.Errorf("nemesis table: %d rows, want a header and 8 ops", len(rows))
	}
}

func TestReportInvalid(t *testing.T) {
	res := Result{Valid: false, Lost: 2, Problems: []string{"lost: acknowledged, not in the final read (2): <script>p0-1</script>"}}
	page, doc := renderReport(t, reportHistory(), res)
	verdict := htmlFindAll(doc, "p", htmlHasClass("verdict"))
	if len(verdict) != 1 || htmlText(verdict[0]) != "INVALID" || !htmlHasClass("invalid")(verdict[0]) {
		t.Fatalf("verdict: %v", verdict)
	}
	problems := htmlFindAll(doc, "ul", htmlHasClass("problems"))
	if len(problems) != 1 || len(htmlFindAll(problems[0], "li", nil)) != 1 ||
		!strings.Contains(htmlText(problems[0]), "<script>p0-1</script>") {
		t.Fatalf("problems: %v", problems)
	}
	if strings.Contains(page, "<script") {
		t.Fatal("unescaped <script> in the page")
	}
}

func TestReportEmptyHistory(t *testing.T) {
	_, doc := renderReport(t, nil, Result{})
	if n := len(htmlFindAll(doc, "g", htmlHasClass("fault"))); n != 0 {
		t.Fatalf("%d fault bands", n)
	}
}

func TestReportThroughputBuckets(t *testing.T) {
	ops := reportHistory()
	ss := throughputSeries(ops, 10)
	if len(ss) != 3 || ss[0].name != "publish ok" {
		t.Fatalf("series %v", ss)
	}
	for b, v := range ss[0].values {
		want := 30.0 // 3 producers, 10 per second each
		switch b {
		case 4: // p1-40 failed, p2-45 was info
			want = 28
		}
		if v != want {
			t.Errorf("bucket %d: %v ok, want %v", b, v, want)
		}
	}
	if ss[1].values[4] != 1 || ss[2].values[4] != 1 {
		t.Errorf("fail %v, info %v", ss[1].values, ss[2].values)
	}
}

func TestReportLatencyPairing(t *testing.T) {
	tl := &opTimeline{}
	tl.add(0, Op{Process: "p0", Type: Invoke, F: FPublish, Value: "a"}).
		add(1, Op{Process: "p0", Type: Invoke, F: FPublish, Value: "b"}). // a never completed
		add(1.5, Op{Process: "p1", Type: Invoke, F: FPublish}).
		add(1.25, Op{Process: "p0", Type: OK, F: FPublish, Value: "b"}).
		add(2, Op{Process: "p1", Type: Info, F: FPublish}).
		add(3, Op{Process: "p1", Type: OK, F: FPublish}). // nothing open
		add(3, Op{Process: "nemesis", Type: Invoke, F: "kill-leader"}).
		add(4, Op{Process: "nemesis", Type: OK, F: "kill-leader"})
	got := pairLatencies(tl.ops)
	want := []latencyPoint{{tlSec(1), tlSec(0.25), OK}, {tlSec(1.5), tlSec(0.5), Info}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pairs %v, want %v", got, want)
	}
}

func TestReportLatencyThinning(t *testing.T) {
	var pts []latencyPoint
	for i := range 30000 {
		typ := OK
		if i%300 == 7 {
			typ = Fail
		} else if i%500 == 9 {
			typ = Info
		}
		pts = append(pts, latencyPoint{at: int64(i), lat: int64(i), typ: typ})
	}
	kept := thinLatencies(pts, maxLatencyPoints)
	count := func(s []latencyPoint) map[string]int {
		m := map[string]int{}
		for _, p := range s {
			m[p.typ]++
		}
		return m
	}
	all, got := count(pts), count(kept)
	if len(kept) != maxLatencyPoints {
		t.Fatalf("kept %d of %d, want %d", len(kept), len(pts), maxLatencyPoints)
	}
	if got[Fail] != all[Fail] || got[Info] != all[Info] {
		t.Fatalf("kept %v of %v: every fail and info must stay", got, all)
	}
	if again := thinLatencies(pts, maxLatencyPoints); fmt.Sprint(again) != fmt.Sprint(kept) {
		t.Fatal("not deterministic")
	}
	if small := thinLatencies(pts[:100], maxLatencyPoints); len(small) != 100 {
		t.Fatalf("thinned a small plot to %d", len(small))
	}
	// More fails than the limit: all of them, and a quarter of the limit
	// of ok points.
	for i := range pts {
		if i%2 == 0 {
			pts[i].typ = Fail
		}
	}
	all, got = count(pts), count(thinLatencies(pts, 1000))
	if got[Fail] != all[Fail] || got[Info] != all[Info] || got[OK] != 250 {
		t.Fatalf("kept %v of %v, want every fail and info and 250 ok", got, all)
	}
}

func TestReportLatencyQuantiles(t *testing.T) {
	var pts []latencyPoint
	for i := 1; i <= 100; i++ { // second 0: 1..100 ms
		pts = append(pts, latencyPoint{at: tlSec(0.5), lat: tlSec(float64(i) / 1000), typ: OK})
	}
	pts = append(pts, latencyPoint{at: tlSec(0.5), lat: tlSec(9), typ: Info}, // not ok: left out
		latencyPoint{at: tlSec(2.1), lat: tlSec(0.007), typ: OK})
	p50, p99 := latencyQuantiles(pts, 3)
	if p50[0] != 50 || p99[0] != 99 || !math.IsNaN(p50[1]) || p50[2] != 7 || p99[2] != 7 {
		t.Fatalf("p50 %v, p99 %v", p50, p99)
	}
}

func TestFaultWindows(t *testing.T) {
	tl := &opTimeline{}
	tl.add(0.5, Op{Process: "p0", Type: Invoke, F: FPublish}).
		// A composite fault with two repairs.
		nemesis(1.0, 1.1, "partition-then-kill-leader", "n1", OK, "isolated n1 (leader n1)").
		add(2.0, Op{Process: "nemesis", Node: "n1", Type: Invoke, F: "kill"}).
		add(2.1, Op{Process: "nemesis", Node: "n1", Type: OK, F: "kill", Value: "killed n1 while cut off"}).
		nemesis(3.0, 3.1, "heal", "n1", OK, "healed all links").
		nemesis(3.2, 3.5, "restart", "n1", OK, "restarted n1").
		// A fault that could not be injected, and so was not repaired.
		nemesis(5.0, 5.4, "kill-leader", "", Info, "no leader found").
		// A pause whose resume failed: still a repair.
		nemesis(6.0, 6.1, "pause-follower", "n3", OK, "paused n3").
		nemesis(7.0, 7.2, "resume", "n3", Info, "no such process").
		// A fault not repaired, still open when the history ends.
		nemesis(8.0, 8.1, "kill-follower", "n3", OK, "killed n3").
		add(9.0, Op{Process: "p0", Type: OK, F: FPublish})
	got := FaultWindows(tl.ops)
	want := []FaultWindow{
		{Fault: "partition-then-kill-leader", Node: "n1", Start: tlSec(1.0), End: tlSec(3.5),
			Detail: "partition-then-kill-leader ok: isolated n1 (leader n1); kill ok: killed n1 while cut off; heal ok: healed all links; restart ok: restarted n1"},
		{Fault: "kill-leader", Start: tlSec(5.0), End: tlSec(5.4), NotInjected: true, Detail: "kill-leader info: no leader found"},
		{Fault: "pause-follower", Node: "n3", Start: tlSec(6.0), End: tlSec(7.2), Detail: "pause-follower ok: paused n3; resume info: no such process"},
		{Fault: "kill-follower", Node: "n3", Start: tlSec(8.0), End: tlSec(9.0), Open: true, Detail: "kill-follower ok: killed n3"},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("windows\n%+v\nwant\n%+v", got, want)
	}
	if got[0].Label() != "partition-then-kill-leader n1" || got[1].Label() != "kill-leader (not injected)" ||
		got[3].Label() != "kill-follower n3 (open)" {
		t.Errorf("labels %q, %q, %q", got[0].Label(), got[1].Label(), got[3].Label())
	}
}

func TestFaultWindowsHealAll(t *testing.T) {
	tl := &opTimeline{}
	// Not repaired: heal-all's completion ends it.
	tl.nemesis(1.0, 1.1, "pause-leader", "n2", OK, "paused n2").
		nemesis(4.0, 4.5, "heal-all", "", OK, "").
		add(6.0, Op{Process: "reader", Type: Invoke, F: FRead})
	got := FaultWindows(tl.ops)
	if len(got) != 1 || got[0].Start != tlSec(1.0) || got[0].End != tlSec(4.5) || got[0].Open {
		t.Fatalf("windows %+v", got)
	}

	// A repair invoked and never completed: open to the end.
	tl = &opTimeline{}
	tl.nemesis(1.0, 1.1, "kill-leader", "n2", OK, "killed n2").
		add(3.0, Op{Process: "nemesis", Node: "n2", Type: Invoke, F: "restart"}).
		add(5.0, Op{Process: "p1", Type: Invoke, F: FPublish})
	got = FaultWindows(tl.ops)
	if len(got) != 1 || got[0].End != tlSec(5.0) || !got[0].Open {
		t.Fatalf("windows %+v", got)
	}

	// A fault with no completion at all, followed by another fault.
	tl = &opTimeline{}
	tl.add(1.0, Op{Process: "nemesis", Type: Invoke, F: "slow-network"}).
		nemesis(2.0, 2.1, "kill-leader", "n1", Info, "no leader found").
		nemesis(4.0, 4.2, "heal-all", "", OK, "")
	got = FaultWindows(tl.ops)
	if len(got) != 2 || got[0].End != tlSec(2.0) || got[0].Open || got[0].NotInjected ||
		got[1].End != tlSec(2.1) || !got[1].NotInjected {
		t.Fatalf("windows %+v", got)
	}
}

func TestReportFromDir(t *testing.T) {
	dir := t.TempDir()
	var hist bytes.Buffer
	hist.WriteString(`{"seed":7,"start":"2026-01-01T00:00:00Z"}` + "\n")
	for _, op := range reportHistory() {
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		hist.Write(append(b, '\n'))
	}
	results := `{"config":{"run_dir":"x","seed":1234,"duration":"10s"},"result":{"valid":false,"lost":3,"problems":["lost: 3"]}}`
	for name, data := range map[string]string{"history.jsonl": hist.String(), "results.json": results} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ReportFromDir(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"seed 1234", ">INVALID<", "lost: 3", "partition-leader n2"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html has no %q", want)
		}
	}

	// No result: an error, not a report of an empty result.
	if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte(`{"config":{"seed":1}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReportFromDir(dir); err == nil {
		t.Fatal("no error without a result")
	}
}
