package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The HTML report of a run: its verdict and counters, throughput and
// latency over time with the nemesis's fault windows shaded, and the
// nemesis's ops. The page is self-contained: inline CSS and SVG, no
// JavaScript.

// FaultWindow is the span of one fault in a history: from the nemesis's
// invocation of the fault to the completion of the last repair (heal,
// restart, resume) that follows it before the next fault, or to the
// completion of the final heal-all, or to the end of the history.
type FaultWindow struct {
	Fault string // its f: "kill-leader"
	Node  string // the node its completion names ("" for slow-network)
	Start int64  // ns since the start of the run: the fault's invocation
	End   int64  // ns: see FaultWindows
	// NotInjected: the fault completed info (it could not be done, e.g.
	// no leader was found) and nothing repaired it; End is its completion.
	NotInjected bool
	// Open: nothing repaired it before the history ended; End is the time
	// of the last op.
	Open bool
	// Detail: how the window's ops ended ("kill-leader ok: killed n2
	// (leader n2); restart ok: restarted n2").
	Detail string
}

// Label names the window on a plot: "kill-leader n2".
func (w FaultWindow) Label() string {
	s := w.Fault
	if w.Node != "" {
		s += " " + w.Node
	}
	switch {
	case w.NotInjected:
		s += " (not injected)"
	case w.Open:
		s += " (open)"
	}
	return s
}

// isFaultStep reports whether f is a later step of a fault: the kill of
// a composite, the damage done to a killed node's files, or the check that
// a flipped bit was found.
func isFaultStep(f string) bool {
	return f == "kill" || f == "lose-unsynced" || f == "flip" || f == "detect"
}

// isNemesisRepair reports whether f is a nemesis op that repairs a fault.
func isNemesisRepair(f string) bool { return f == "heal" || f == "restart" || f == "resume" }

// FaultWindows finds the fault windows of a history, in order. A nemesis
// op is a fault unless its f is a repair (heal, restart, resume), "kill"
// (the second step of a composite fault) or "heal-all". A window ends at
// the completion of the last repair of its fault; a fault that was not
// repaired ends at the next fault's invocation, at heal-all's completion,
// or, open, at the end of the history; one that completed info and was not
// repaired ends at its completion (NotInjected). While one of its ops is
// invoked and not completed, a window stays open until the next fault,
// heal-all's completion or the end of the history.
func FaultWindows(ops []Op) []FaultWindow {
	var last int64 // the end of the history
	for _, op := range ops {
		last = max(last, op.Time)
	}
	var (
		out       []FaultWindow
		cur       *FaultWindow // the window being built
		completed bool         // cur's fault op has completed
		repaired  bool         // a repair of cur has completed
		pending   bool         // an op of cur is invoked and not completed
		details   []string
	)
	// finish closes cur at end (the next fault's invocation, heal-all's
	// completion or, atEnd, the end of the history) unless it closed
	// itself.
	finish := func(end int64, atEnd bool) {
		if cur == nil {
			return
		}
		// Otherwise cur.End is its last repair's completion, or the
		// completion of a fault not injected.
		if pending || (!repaired && !cur.NotInjected) {
			cur.End, cur.Open = end, atEnd
			cur.NotInjected = false // something is still going on: draw it whole
		}
		cur.Detail = strings.Join(details, "; ")
		out = append(out, *cur)
		cur, completed, repaired, pending, details = nil, false, false, false, nil
	}
	note := func(op Op) {
		if op.Type == Invoke {
			return
		}
		s := op.F + " " + op.Type
		if msg := cmp.Or(op.Error, op.Value); msg != "" {
			s += ": " + msg
		}
		details = append(details, s)
	}
	for _, op := range ops {
		if op.Process != "nemesis" {
			continue
		}
		switch {
		case op.F == "heal-all":
			if op.Type != Invoke {
				finish(op.Time, false)
			}
		case isNemesisRepair(op.F) || isFaultStep(op.F):
			if cur == nil {
				continue
			}
			note(op)
			if op.Type == Invoke {
				pending = true
				continue
			}
			pending = false
			if isNemesisRepair(op.F) {
				repaired, cur.End = true, op.Time
				cur.NotInjected = false
			} else if repaired {
				cur.End = op.Time // a step after the repair (detect)
			}
		case op.Type == Invoke: // a new fault
			finish(op.Time, false)
			cur = &FaultWindow{Fault: op.F, Start: op.Time, End: op.Time}
			pending = true
		default: // a fault's completion
			if cur == nil || completed || op.F != cur.Fault {
				continue
			}
			note(op)
			completed, pending = true, false
			cur.Node, cur.End = op.Node, op.Time
			cur.NotInjected = op.Type != OK
		}
	}
	finish(last, true)
	return out
}

// latencyPoint is a client op's completion paired with its invocation.
type latencyPoint struct {
	at  int64 // the invocation's time, ns
	lat int64 // ns from the invocation to the completion
	typ string
}

// pairLatencies pairs every completion of a client process (any process
// but the nemesis) with the latest unmatched invocation of the same
// process; a completion without one is left out.
func pairLatencies(ops []Op) []latencyPoint {
	open := map[string]int64{} // process -> time of its open invocation
	var out []latencyPoint
	for _, op := range ops {
		if op.Process == "nemesis" {
			continue
		}
		if op.Type == Invoke {
			open[op.Process] = op.Time
			continue
		}
		at, ok := open[op.Process]
		if !ok {
			continue
		}
		delete(open, op.Process)
		out = append(out, latencyPoint{at: at, lat: op.Time - at, typ: op.Type})
	}
	return out
}

// maxLatencyPoints bounds the points of the latency plot.
const maxLatencyPoints = 20000

// thinLatencies keeps every fail and info point and, if there are more
// than limit points in all, as many ok points as fit the limit (at least
// a quarter of it), evenly spaced in the order of pts.
func thinLatencies(pts []latencyPoint, limit int) []latencyPoint {
	if len(pts) <= limit {
		return pts
	}
	oks := 0
	for _, p := range pts {
		if p.typ == OK {
			oks++
		}
	}
	budget := max(limit-(len(pts)-oks), limit/4, 1)
	var out []latencyPoint
	i := 0 // ok points seen
	for _, p := range pts {
		if p.typ == OK {
			// Keep the i-th when floor(i*budget/oks) steps up: budget
			// of the oks in all, evenly spread.
			keep := (i+1)*budget/oks > i*budget/oks
			i++
			if !keep {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// plotSeries is one line of a plot.
type plotSeries struct {
	name   string
	color  string
	dashed bool
	marks  bool      // a dot on every bucket above 0, to see a few among many
	values []float64 // per 1 s bucket; NaN: no value (a gap)
}

// throughputSeries counts the client ops completed per 1 s bucket: one
// series per f of the ok completions, then the fail and the info
// completions of every f (only if there are any).
func throughputSeries(ops []Op, buckets int) []plotSeries {
	byF := map[string][]float64{}
	fails, infos := make([]float64, buckets), make([]float64, buckets)
	var anyFail, anyInfo bool
	for _, op := range ops {
		if op.Process == "nemesis" || op.Type == Invoke {
			continue
		}
		b := secondBucket(op.Time, buckets)
		switch op.Type {
		case OK:
			if byF[op.F] == nil {
				byF[op.F] = make([]float64, buckets)
			}
			byF[op.F][b]++
		case Fail:
			fails[b]++
			anyFail = true
		default:
			infos[b]++
			anyInfo = true
		}
	}
	fs := make([]string, 0, len(byF))
	for f := range byF {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	var out []plotSeries
	for i, f := range fs {
		out = append(out, plotSeries{name: f + " ok", color: opColor(f, i), values: byF[f]})
	}
	if anyFail {
		out = append(out, plotSeries{name: "fail (all f)", color: colorFail, dashed: true, marks: true, values: fails})
	}
	if anyInfo {
		out = append(out, plotSeries{name: "info (all f)", color: colorInfo, dashed: true, marks: true, values: infos})
	}
	return out
}

// secondBucket is the 1 s bucket of a time in ns, within [0, buckets).
func secondBucket(t int64, buckets int) int {
	return min(max(int(t/1e9), 0), buckets-1)
}

// latencyQuantiles computes the p50 and p99 latency (ms) of the ok points
// invoked in each 1 s bucket (NaN where there are none), by nearest rank.
func latencyQuantiles(pts []latencyPoint, buckets int) (p50, p99 []float64) {
	per := make([][]int64, buckets)
	for _, p := range pts {
		if p.typ == OK {
			b := secondBucket(p.at, buckets)
			per[b] = append(per[b], p.lat)
		}
	}
	p50, p99 = make([]float64, buckets), make([]float64, buckets)
	rank := func(s []int64, q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return float64(s[max(i, 0)]) / 1e6
	}
	for b, s := range per {
		if len(s) == 0 {
			p50[b], p99[b] = math.NaN(), math.NaN()
			continue
		}
		slices.Sort(s)
		p50[b], p99[b] = rank(s, 0.50), rank(s, 0.99)
	}
	return p50, p99
}

// Colors: of the ops' types, of the ok series per f, of the faults.
const (
	colorOK   = "#1f77b4"
	colorFail = "#d62728"
	colorInfo = "#ff7f0e"
	colorP50  = "#2ca02c"
	colorP99  = "#9467bd"
)

var (
	opColors    = map[string]string{FPublish: "#1f77b4", "fetch": "#2ca02c", "ack": "#9467bd", FRead: "#8c564b"}
	extraColors = []string{"#17becf", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"}
	// faultColors are fixed per fault: partitions in blues, kills in
	// reds, pauses in purples, the composites in brown and green; a fault
	// not listed takes the next of extraFaultColors in the order of its
	// first appearance in the history.
	faultColors = map[string]string{
		"partition-leader": "#4e79a7", "partition-follower": "#76b7b2", "partition-bridge": "#17becf",
		"partition-one-way": "#86bcb6", "partition-then-kill-leader": "#59a14f",
		"kill-leader": "#e15759", "kill-follower": "#ff9da7",
		"pause-leader": "#b07aa1", "pause-follower": "#d4a6c8", "pause-then-kill-leader": "#9c755f",
		"slow-network": "#edc948",
	}
	extraFaultColors = []string{"#f28e2b", "#bab0ac", "#8cd17d", "#499894", "#d37295", "#fabfd2", "#79706e"}
)

// opColor is the color of the ok series of f, the i-th series.
func opColor(f string, i int) string {
	if c, ok := opColors[f]; ok {
		return c
	}
	return extraColors[i%len(extraColors)]
}

// faultPalette gives every fault of windows its color, and lists the
// faults in the order of their first appearance.
func faultPalette(windows []FaultWindow) (map[string]string, []string) {
	colors := map[string]string{}
	var order []string
	extra := 0
	for _, w := range windows {
		if _, ok := colors[w.Fault]; ok {
			continue
		}
		c, ok := faultColors[w.Fault]
		if !ok {
			c = extraFaultColors[extra%len(extraFaultColors)]
			extra++
		}
		colors[w.Fault] = c
		order = append(order, w.Fault)
	}
	return colors, order
}

// The size of a plot and its margins, in px.
const (
	plotWidth  = 1000
	plotHeight = 300
	plotLeft   = 64
	plotRight  = 16
	plotTop    = 12
	plotBottom = 40
)

// svgPlot draws one SVG chart: time in seconds on x, from 0 to seconds; on
// y, from lo to hi, linear or log-scale.
type svgPlot struct {
	b       strings.Builder
	id      string // prefix of the ids in the SVG, unique in the page
	seconds float64
	lo, hi  float64
	logY    bool
}

// x is the abscissa of t ns.
func (p *svgPlot) x(t int64) float64 { return p.xs(float64(t) / 1e9) }

// xs is the abscissa of s seconds.
func (p *svgPlot) xs(s float64) float64 {
	return plotLeft + s/p.seconds*(plotWidth-plotLeft-plotRight)
}

// y is the ordinate of v, clamped to the plot.
func (p *svgPlot) y(v float64) float64 {
	lo, hi := p.lo, p.hi
	if p.logY {
		v, lo, hi = math.Log10(max(v, p.lo)), math.Log10(lo), math.Log10(hi)
	}
	f := min(max((v-lo)/(hi-lo), 0), 1)
	return plotHeight - plotBottom - f*(plotHeight-plotTop-plotBottom)
}

func (p *svgPlot) printf(format string, args ...any) { fmt.Fprintf(&p.b, format, args...) }

// svgNum formats a coordinate.
func svgNum(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// begin opens the SVG, with a hatch pattern for the faults not injected.
func (p *svgPlot) begin(label string) {
	p.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="system-ui, sans-serif" role="img" aria-label="%s">`+"\n",
		plotWidth, plotHeight, plotWidth, plotHeight, html.EscapeString(label))
	p.printf(`<defs><pattern id="%s-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`+
		`<line x1="0" y1="0" x2="0" y2="6" stroke="#555" stroke-width="2"/></pattern></defs>`+"\n", p.id)
	p.printf(`<rect class="frame" x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>`+"\n",
		plotLeft, plotTop, plotWidth-plotLeft-plotRight, plotHeight-plotTop-plotBottom)
}

// axes draws the ticks, grid lines and labels of both axes.
func (p *svgPlot) axes(yLabel string) {
	top, bottom := float64(plotTop), float64(plotHeight-plotBottom)
	p.printf(`<g class="axes" font-size="11" fill="#333">` + "\n")
	step := niceStep(p.seconds, 10)
	for i := 0; float64(i)*step <= p.seconds*(1+1e-9); i++ {
		s := float64(i) * step
		x := p.xs(s)
		p.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee"/>`, svgNum(x), svgNum(top), svgNum(x), svgNum(bottom))
		p.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, svgNum(x), svgNum(bottom), svgNum(x), svgNum(bottom+4))
		p.printf(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", svgNum(x), svgNum(bottom+16), tickLabel(s, step))
	}
	p.printf(`<text x="%s" y="%d" text-anchor="middle">time (s)</text>`+"\n", svgNum(p.xs(p.seconds/2)), plotHeight-4)
	var ticks []float64
	var labels []string
	if p.logY {
		for e := math.Round(math.Log10(p.lo)); e <= math.Round(math.Log10(p.hi)); e++ {
			ticks = append(ticks, math.Pow(10, e))
			labels = append(labels, msLabel(math.Pow(10, e)))
		}
	} else {
		step := niceStep(p.hi-p.lo, 5)
		for i := 0; p.lo+float64(i)*step <= p.hi*(1+1e-9); i++ {
			v := p.lo + float64(i)*step
			ticks = append(ticks, v)
			labels = append(labels, tickLabel(v, step))
		}
	}
	for i, v := range ticks {
		y := p.y(v)
		p.printf(`<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#eee"/>`, plotLeft, svgNum(y), plotWidth-plotRight, svgNum(y))
		p.printf(`<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#333"/>`, plotLeft-4, svgNum(y), plotLeft, svgNum(y))
		p.printf(`<text x="%d" y="%s" text-anchor="end">%s</text>`+"\n", plotLeft-6, svgNum(y+4), html.EscapeString(labels[i]))
	}
	mid := (top + bottom) / 2
	p.printf(`<text x="14" y="%s" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`+"\n",
		svgNum(mid), svgNum(mid), html.EscapeString(yLabel))
	p.printf("</g>\n")
}

// faults shades the fault windows (bands, below the data).
func (p *svgPlot) faults(windows []FaultWindow, colors map[string]string) {
	top, height := float64(plotTop), float64(plotHeight-plotTop-plotBottom)
	right := float64(plotWidth - plotRight)
	p.printf(`<g class="faults">` + "\n")
	for _, w := range windows {
		x0, x1 := p.x(w.Start), min(p.x(w.End), right)
		title := fmt.Sprintf("%s: %.3f s to %.3f s", w.Label(), float64(w.Start)/1e9, float64(w.End)/1e9)
		if w.Detail != "" {
			title += "\n" + w.Detail
		}
		attrs := fmt.Sprintf(`class="fault" data-fault="%s" data-node="%s" data-start="%.3f" data-end="%.3f"`,
			html.EscapeString(w.Fault), html.EscapeString(w.Node), float64(w.Start)/1e9, float64(w.End)/1e9)
		c := colors[w.Fault]
		if w.NotInjected {
			// A thin hatched marker, outlined in the fault's color.
			p.printf(`<g %s data-injected="false"><title>%s</title><rect x="%s" y="%s" width="%s" height="%s" fill="url(#%s-hatch)" stroke="%s" stroke-dasharray="4 3"/></g>`+"\n",
				attrs, html.EscapeString(title), svgNum(x0), svgNum(top), svgNum(max(x1-x0, 4)), svgNum(height), p.id, c)
			continue
		}
		p.printf(`<g %s><title>%s</title><rect x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.2"/></g>`+"\n",
			attrs, html.EscapeString(title), svgNum(x0), svgNum(top), svgNum(max(x1-x0, 1)), svgNum(height), c)
	}
	p.printf("</g>\n")
}

// faultLabels writes the windows' labels, down their left edges (above
// the data).
func (p *svgPlot) faultLabels(windows []FaultWindow, colors map[string]string) {
	p.printf(`<g class="fault-labels" font-size="10" paint-order="stroke" stroke="#fff" stroke-width="3">` + "\n")
	for _, w := range windows {
		x, y := p.x(w.Start)+3, float64(plotTop+4)
		p.printf(`<text x="%s" y="%s" fill="%s" transform="rotate(90 %s %s)">%s</text>`+"\n",
			svgNum(x), svgNum(y), darkerColor(colors[w.Fault]), svgNum(x), svgNum(y), html.EscapeString(w.Label()))
	}
	p.printf("</g>\n")
}

// line draws a series at the middles of its buckets, as a polyline when
// it has no gaps, else as a path of its runs.
func (p *svgPlot) line(s plotSeries) {
	if s.marks {
		p.printf(`<g class="marks" data-series="%s" fill="%s">`, html.EscapeString(s.name), s.color)
		for b, v := range s.values {
			if v > 0 {
				p.printf(`<circle cx="%s" cy="%s" r="2.5"/>`, svgNum(p.xs(float64(b)+0.5)), svgNum(p.y(v)))
			}
		}
		p.printf("</g>\n")
	}
	dash := ""
	if s.dashed {
		dash = ` stroke-dasharray="5 3"`
	}
	var pts []string
	gaps := false
	for b, v := range s.values {
		if math.IsNaN(v) {
			gaps = true
			continue
		}
		pts = append(pts, svgNum(p.xs(float64(b)+0.5))+","+svgNum(p.y(v)))
	}
	if !gaps {
		p.printf(`<polyline class="series" data-series="%s" points="%s" fill="none" stroke="%s" stroke-width="1.5"%s/>`+"\n",
			html.EscapeString(s.name), strings.Join(pts, " "), s.color, dash)
		return
	}
	var d strings.Builder
	prevGap := true
	for b, v := range s.values {
		if math.IsNaN(v) {
			prevGap = true
			continue
		}
		cmd := "L"
		if prevGap {
			cmd = "M"
		}
		fmt.Fprintf(&d, "%s%s %s ", cmd, svgNum(p.xs(float64(b)+0.5)), svgNum(p.y(v)))
		prevGap = false
	}
	p.printf(`<path class="series" data-series="%s" d="%s" fill="none" stroke="%s" stroke-width="1.5"%s/>`+"\n",
		html.EscapeString(s.name), strings.TrimSpace(d.String()), s.color, dash)
}

func (p *svgPlot) end() string {
	p.printf("</svg>\n")
	return p.b.String()
}

// niceStep is a round step (1, 2 or 5 times a power of ten) that cuts
// span into about n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// niceCeil is the smallest multiple of a round step at or above v (at
// least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	step := niceStep(v, 5)
	return math.Ceil(v/step) * step
}

// tickLabel formats a tick v with as many decimals as step needs.
func tickLabel(v, step float64) string {
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// msLabel formats a latency in ms: "0.1 ms", "10 ms", "1 s".
func msLabel(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'g', -1, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'g', -1, 64) + " ms"
}

// darkerColor darkens a "#rrggbb" color for text.
func darkerColor(c string) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(c, "#"), 16, 32)
	if err != nil || len(c) != 7 {
		return "#333"
	}
	r, g, b := v>>16&0xff, v>>8&0xff, v&0xff
	return fmt.Sprintf("#%02x%02x%02x", r*6/10, g*6/10, b*6/10)
}

// minLatencyMs is the bottom of the latency axis at most: a latency below
// it is drawn at it.
const minLatencyMs = 0.001

// throughputSVG draws the throughput plot.
func throughputSVG(ss []plotSeries, seconds float64, windows []FaultWindow, colors map[string]string) string {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.values {
			top = max(top, v)
		}
	}
	p := &svgPlot{id: "tp", seconds: seconds, lo: 0, hi: niceCeil(top)}
	p.begin("throughput: completed ops per second")
	p.faults(windows, colors)
	p.axes("ops/s")
	p.printf(`<g class="throughput">` + "\n")
	for _, s := range ss {
		p.line(s)
	}
	p.printf("</g>\n")
	p.faultLabels(windows, colors)
	return p.end()
}

// latencySVG draws the latency plot: a point per completed op (pts,
// thinned) and the p50 and p99 of the ok ops per second.
func latencySVG(pts []latencyPoint, p50, p99 []float64, seconds float64, windows []FaultWindow, colors map[string]string) string {
	lo, hi := math.Inf(1), 0.0
	for _, pt := range pts {
		ms := max(float64(pt.lat)/1e6, minLatencyMs)
		lo, hi = min(lo, ms), max(hi, ms)
	}
	if len(pts) == 0 {
		lo, hi = 0.1, 1000
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	p := &svgPlot{id: "lat", seconds: seconds, lo: lo, hi: hi, logY: true}
	p.begin("latency of each completed op, log scale")
	p.faults(windows, colors)
	p.axes("latency (log)")
	// ok below, then info, then fail on top.
	for _, g := range []struct {
		typ, color string
		r          string
		opacity    string
	}{{OK, colorOK, "1.5", "0.5"}, {Info, colorInfo, "2.5", "0.9"}, {Fail, colorFail, "2.5", "0.9"}} {
		p.printf(`<g class="latency" data-type="%s" fill="%s" fill-opacity="%s">`+"\n", g.typ, g.color, g.opacity)
		for _, pt := range pts {
			if pt.typ == g.typ || (g.typ == Info && pt.typ != OK && pt.typ != Fail) {
				p.printf(`<circle cx="%s" cy="%s" r="%s"/>`+"\n", svgNum(p.x(pt.at)), svgNum(p.y(float64(pt.lat)/1e6)), g.r)
			}
		}
		p.printf("</g>\n")
	}
	p.printf(`<g class="quantiles">` + "\n")
	p.line(plotSeries{name: "p50 ok", color: colorP50, values: p50})
	p.line(plotSeries{name: "p99 ok", color: colorP99, dashed: true, values: p99})
	p.printf("</g>\n")
	p.faultLabels(windows, colors)
	return p.end()
}

// The page's data.
type (
	reportPage struct {
		Title         string
		Seed          int64
		Valid         bool
		Seconds       string
		ClientOps     int
		Counts        string // of the completions by type
		Counters      []reportCounter
		Lists         []reportList
		Throughput    template.HTML
		ThroughputKey []reportKey
		Latency       template.HTML
		LatencyKey    []reportKey
		LatencyNote   string
		FaultKey      []reportKey
		Windows       int
		Nemesis       []reportNemesisRow
		Errors        []reportErrorRow
		MoreErrors    int // distinct errors left out
	}
	reportCounter struct{ Name, Value, Class string }
	reportList    struct {
		Name  string
		Items []string
	}
	// reportKey is a legend entry: a swatch of Kind ("line", "dash",
	// "dot", "band", "hatch") in Color.
	reportKey struct {
		Label string
		Color template.CSS
		Kind  string
	}
	reportNemesisRow struct{ Time, F, Type, Node, Detail string }
	reportErrorRow   struct {
		F, Type, Error string
		Count          int
	}
)

// resultRows lists the fields of res generically, in their JSON order:
// booleans and numbers as counters, lists (the problems) as lists, and
// anything else as JSON text.
func resultRows(res Result) ([]reportCounter, []reportList, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	var counters []reportCounter
	var lists []reportList
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		name, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		label := strings.ReplaceAll(name, "_", "-")
		switch v := v.(type) {
		case bool:
			c := reportCounter{Name: label, Value: "yes", Class: "yes"}
			if !v {
				c.Value, c.Class = "NO", "no"
			}
			counters = append(counters, c)
		case json.Number:
			c := reportCounter{Name: label, Value: v.String(), Class: "num"}
			if v.String() == "0" {
				c.Class = "num zero"
			}
			counters = append(counters, c)
		case []any:
			l := reportList{Name: label}
			for _, item := range v {
				if s, ok := item.(string); ok {
					l.Items = append(l.Items, s)
				} else {
					j, _ := json.Marshal(item)
					l.Items = append(l.Items, string(j))
				}
			}
			lists = append(lists, l)
		default:
			j, _ := json.Marshal(v)
			counters = append(counters, reportCounter{Name: label, Value: string(j)})
		}
	}
	return counters, lists, nil
}

// WriteReport writes a self-contained HTML page (no JavaScript, no external
// resources: inline SVG and CSS) describing a run.
func WriteReport(w io.Writer, title string, seed int64, ops []Op, res Result) error {
	var last int64
	for _, op := range ops {
		last = max(last, op.Time)
	}
	buckets := int(last/1e9) + 1
	seconds := float64(buckets)

	page := reportPage{Title: title, Seed: seed, Valid: res.Valid, Seconds: fmt.Sprintf("%.1f s", float64(last)/1e9)}
	var err error
	if page.Counters, page.Lists, err = resultRows(res); err != nil {
		return err
	}

	byType := map[string]int{}
	for _, op := range ops {
		if op.Process == "nemesis" {
			continue
		}
		if op.Type == Invoke {
			page.ClientOps++
		} else {
			byType[op.Type]++
		}
	}
	page.Counts = fmt.Sprintf("%d ok, %d fail, %d info", byType[OK], byType[Fail], byType[Info])

	windows := FaultWindows(ops)
	page.Windows = len(windows)
	colors, order := faultPalette(windows)
	hatched := false
	for _, f := range order {
		page.FaultKey = append(page.FaultKey, reportKey{Label: f, Color: template.CSS(colors[f]), Kind: "band"})
	}
	for _, w := range windows {
		hatched = hatched || w.NotInjected
	}
	if hatched {
		page.FaultKey = append(page.FaultKey, reportKey{Label: "not injected (completed info, no repair)", Color: "#555", Kind: "hatch"})
	}

	ss := throughputSeries(ops, buckets)
	page.Throughput = template.HTML(throughputSVG(ss, seconds, windows, colors))
	for _, s := range ss {
		k := reportKey{Label: s.name, Color: template.CSS(s.color), Kind: "line"}
		if s.dashed {
			k.Kind = "dash"
		}
		page.ThroughputKey = append(page.ThroughputKey, k)
	}

	pts := pairLatencies(ops)
	p50, p99 := latencyQuantiles(pts, buckets)
	shown := thinLatencies(pts, maxLatencyPoints)
	if len(shown) < len(pts) {
		page.LatencyNote = fmt.Sprintf("%d of %d ops shown: every fail and info, ok ops sampled evenly.", len(shown), len(pts))
	}
	page.Latency = template.HTML(latencySVG(shown, p50, p99, seconds, windows, colors))
	page.LatencyKey = []reportKey{
		{Label: "ok", Color: colorOK, Kind: "dot"}, {Label: "fail", Color: colorFail, Kind: "dot"},
		{Label: "info", Color: colorInfo, Kind: "dot"},
		{Label: "p50 of ok per s", Color: colorP50, Kind: "line"}, {Label: "p99 of ok per s", Color: colorP99, Kind: "dash"},
	}

	for _, op := range ops {
		if op.Process == "nemesis" {
			page.Nemesis = append(page.Nemesis, reportNemesisRow{Time: fmt.Sprintf("%.3f", float64(op.Time)/1e9),
				F: op.F, Type: op.Type, Node: op.Node, Detail: cmp.Or(op.Error, op.Value)})
		}
	}
	page.Errors, page.MoreErrors = clientErrors(ops, maxErrorRows)
	return reportTemplate.Execute(w, page)
}

// maxErrorRows bounds the client errors listed.
const maxErrorRows = 20

// clientErrors counts the client completions by f, type and error, most
// frequent first, and returns the first limit and how many more there are.
func clientErrors(ops []Op, limit int) ([]reportErrorRow, int) {
	type key struct{ f, typ, err string }
	counts := map[key]int{}
	for _, op := range ops {
		if op.Process != "nemesis" && op.Type != Invoke && op.Error != "" {
			counts[key{op.F, op.Type, op.Error}]++
		}
	}
	var rows []reportErrorRow
	for k, n := range counts {
		rows = append(rows, reportErrorRow{F: k.f, Type: k.typ, Error: k.err, Count: n})
	}
	slices.SortFunc(rows, func(a, b reportErrorRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.F, b.F), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Error, b.Error))
	})
	if len(rows) > limit {
		return rows[:limit], len(rows) - limit
	}
	return rows, 0
}

// ReportFromDir writes dir/report.html from the run in dir: its
// history.jsonl and results.json.
func ReportFromDir(dir string) error {
	seed, ops, err := ReadHistory(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var results struct {
		Config struct {
			Seed int64 `json:"seed"`
		} `json:"config"`
		Result *Result `json:"result"`
	}
	if err := json.Unmarshal(b, &results); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if results.Result == nil {
		return errors.New("results.json: no result")
	}
	if results.Config.Seed != 0 {
		seed = results.Config.Seed
	}
	return writeReportFile(dir, seed, ops, *results.Result)
}

// writeReportFile writes dir/report.html for a run's ops and result.
func writeReportFile(dir string, seed int64, ops []Op, res Result) error {
	var buf bytes.Buffer
	if err := WriteReport(&buf, "jepsen-lite run "+dir, seed, ops, res); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.html"), buf.Bytes(), 0o644)
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1040px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; }
.verdict { font-size: 1.6em; font-weight: bold; margin: 0.3em 0; }
.valid { color: #1a7f37; }
.invalid { color: #cf222e; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.zero { color: #888; }
td.no { color: #cf222e; font-weight: bold; }
td.yes { color: #1a7f37; }
ul.problems li { color: #cf222e; }
.legend { font-size: 0.85em; margin: 0.3em 0 0.8em; }
.legend span.key { display: inline-block; margin-right: 1.2em; }
.sw { display: inline-block; width: 22px; height: 10px; margin-right: 4px; vertical-align: middle; }
.sw.line { height: 0; border-top: 2px solid; }
.sw.dash { height: 0; border-top: 2px dashed; }
.sw.dot { width: 8px; height: 8px; border-radius: 50%; }
.sw.band { opacity: 0.35; }
.sw.hatch { border: 1px dashed #555; background: repeating-linear-gradient(45deg, #555 0 2px, transparent 2px 6px); }
.note { font-size: 0.85em; color: #555; }
svg { display: block; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="verdict {{if .Valid}}valid{{else}}invalid{{end}}">{{if .Valid}}VALID{{else}}INVALID{{end}}</p>
<p>seed {{.Seed}} · {{.Seconds}} · {{.ClientOps}} client ops ({{.Counts}}) · {{.Windows}} faults</p>

<h2>Result</h2>
<table class="counters">
{{range .Counters}}<tr><th>{{.Name}}</th><td class="{{.Class}}">{{.Value}}</td></tr>
{{end}}</table>
{{range .Lists}}<h3>{{.Name}}</h3>
<ul class="{{.Name}}">
{{range .Items}}<li>{{.}}</li>
{{end}}</ul>
{{end}}
<h2>Throughput</h2>
<p class="note">Client ops completed per second (1 s buckets), by f and type; shaded: fault windows, from the fault's invocation to its last repair.</p>
{{.Throughput}}
<div class="legend">{{template "keys" .ThroughputKey}}</div>
<div class="legend">{{template "keys" .FaultKey}}</div>

<h2>Latency</h2>
<p class="note">Each completed client op at its invocation time; log scale. Lines: p50 and p99 of the ok ops invoked in each second.{{with .LatencyNote}} {{.}}{{end}}</p>
{{.Latency}}
<div class="legend">{{template "keys" .LatencyKey}}</div>
<div class="legend">{{template "keys" .FaultKey}}</div>

<h2>Client errors</h2>
{{if .Errors}}<table class="errors">
<tr><th>count</th><th>f</th><th>type</th><th>error</th></tr>
{{range .Errors}}<tr><td class="num">{{.Count}}</td><td>{{.F}}</td><td>{{.Type}}</td><td>{{.Error}}</td></tr>
{{end}}</table>{{if .MoreErrors}}<p class="note">and {{.MoreErrors}} other errors.</p>{{end}}{{else}}<p>No client errors.</p>{{end}}

<h2>Nemesis</h2>
{{if .Nemesis}}<table class="nemesis">
<tr><th>time (s)</th><th>f</th><th>type</th><th>node</th><th>value / error</th></tr>
{{range .Nemesis}}<tr><td class="num">{{.Time}}</td><td>{{.F}}</td><td>{{.Type}}</td><td>{{.Node}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>{{else}}<p>No nemesis ops.</p>{{end}}
</body>
</html>
{{define "keys"}}{{range .}}<span class="key">{{if eq .Kind "hatch"}}<span class="sw hatch"></span>{{else}}<span class="sw {{.Kind}}" style="{{if eq .Kind "line" "dash"}}border-color{{else}}background{{end}}: {{.Color}}"></span>{{end}}{{.Label}}</span>{{end}}{{end}}
`))
