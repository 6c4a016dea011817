// Package faultnet is an in-memory network for in-process multi-node Raft
// tests. Each endpoint is a Layer, a raft.StreamLayer (a net.Listener plus
// Dial), so nodes run hashicorp/raft's real NetworkTransport over it
// (raft.NewNetworkTransportWithConfig with Stream set to the Layer), while
// the test cuts, delays and resets links per direction through the Network.
//
// # Model
//
// A connection is a pair of directional byte pipes, one per direction.
// Write copies its bytes into the pipe toward the peer and returns; Read
// takes them out in order. A link is the direction from one endpoint name
// to another, and faults apply to links, for existing and future
// connections alike:
//
//   - Cut(from, to) holds the bytes written from -> to: Write still
//     succeeds (the bytes are buffered), but the reader sees nothing until
//     Heal, when the held bytes flow again, in order, none lost. Bytes
//     that had crossed before the cut (readable, not yet read) stay
//     readable, as in a receive buffer; bytes still delayed in flight are
//     held. This
//     mirrors TCP across a dead link, which keeps retransmitting rather
//     than dropping or reordering data. The failure the nodes observe is
//     the one they would observe over TCP: their own timeouts fire. Raft's
//     NetworkTransport sets a deadline on every RPC, so a held reply turns
//     into a timed-out Read (a net.Error whose Timeout() is true, wrapping
//     os.ErrDeadlineExceeded), the transport drops that connection and
//     Raft sees a failed RPC: missed heartbeats, elections, step-downs.
//     CutBoth, Isolate and Partition are shorthands for sets of cuts; all
//     of them add to the existing faults. Isolate also covers endpoints
//     that appear later; Isolate and Partition leave a node's links to
//     itself up.
//   - Delay(from, to, d) makes each chunk written from -> to readable d
//     after its Write (the delay is stamped on the chunk when it is
//     written); bytes stay in order, so a chunk never overtakes an earlier,
//     slower one.
//   - Heal removes every cut and every delay; held and delayed bytes become
//     readable at once, in order.
//   - Reset(addr) breaks every existing connection touching addr, like the
//     RSTs a restarting node's peers receive: both ends' Reads and Writes
//     fail at once with an error wrapping syscall.ECONNRESET, buffered
//     bytes are discarded. Links are not affected.
//
// A pipe buffers up to 16 MiB; a Write past that blocks until the reader
// drains it, the write deadline passes or the connection breaks (like a
// full TCP send window). Short of that, Write never blocks and never loses
// data while both ends are open.
//
// Closing a connection is a FIN: the closing side's Reads and Writes fail
// (net.ErrClosed) and blocked calls on it return at once; the peer reads
// the bytes written before the Close, then io.EOF. The FIN travels like
// data: a cut link holds it until Heal and a delay delays it. A Write to a
// peer that has closed fails with an error wrapping syscall.EPIPE (the
// bytes could never be read); the writer learns of that Close at once,
// even across a cut.
//
// Dial needs both directions of the link: while either is cut, it waits
// for Heal until the dial timeout and then fails with a net.Error whose
// Timeout() is true (a timeout <= 0 waits until Heal or until the dialing
// Layer closes). A Dial to an endpoint nobody listens on fails at once
// with an error wrapping syscall.ECONNREFUSED (unless a cut link hides it:
// then it times out like any dial across a cut); a dial over delayed links
// takes the round trip (the sum of both directions' delays) and times out
// if that exceeds the timeout.
//
// Layer.Close closes the listener and every connection of that endpoint
// (dialed or accepted, as Close on each); afterwards Listen may create the
// same address again, as a restarted node would. Call Reset(addr) first to
// model a crash rather than a clean shutdown. Like a net.Listener's, a
// second Close returns an error (NetworkTransport.Close closes its
// Layer, so a Layer.Close after it fails harmlessly).
//
// Deadlines (SetDeadline, SetReadDeadline, SetWriteDeadline) behave as on
// a net.Conn: a call blocked past its deadline, or started after it, fails
// with an error wrapping os.ErrDeadlineExceeded.
//
// The package starts no goroutines: waiting is done on channels and timers
// in the caller's goroutine, so nothing of it remains once the callers
// return. All methods are safe for concurrent use.
package faultnet
