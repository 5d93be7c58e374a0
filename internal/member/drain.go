package member

import (
	"context"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/internal/live"
)

// drainClose is the close code and reason a draining node's sockets get:
// 1012 (service restart), which the 2.1.29 SDK and the Go SDK take as a
// network problem and reconnect after, through the balancer, to another
// node (1000, 1001 and 1008 would end their sessions).
const (
	drainClose       = websocket.StatusServiceRestart
	drainCloseReason = "Node draining: reconnect"
)

// drain sends what this cluster node holds to the others before it stops
// (SIGTERM): its health check fails (a balancer sends no one new here),
// its heartbeat says draining, and once another node is up its sockets
// are closed with drainClose and its publishers cut off, to come back on
// another node, which takes their streams over. It returns when each
// stream that had a publisher has another origin, or --drain-timeout has
// passed (0: at once). Without another node up there is no one to send
// them to: the node stops as a single node would.
func (m *Member) drain(stopIngest func()) {
	c := m.c
	m.draining.Store(true)
	c.Beat() // the others hear it now
	deadline := time.Now().Add(m.cfg.DrainTimeout)
	m.log.Info("draining: sockets and publishers go to the other nodes", "timeout", m.cfg.DrainTimeout)
	if !m.otherNodeUp() {
		m.log.Warn("draining: no other node is up to take this node's streams; stopping")
		return
	}
	var held []string // the streams with a publisher now
	for _, st := range m.reg.List() {
		if !st.Internal() && st.Status() == live.StatusLive {
			held = append(held, st.ID())
		}
	}
	m.p().Sockets.CloseWith(int(drainClose), drainCloseReason)
	stopIngest() // no new publish here; those here reconnect elsewhere
	dir := c.Streams()
	moved := func() int {
		n := 0
		for _, id := range held {
			if e, ok := dir.Lookup(id); ok && e.Origin != c.Node() {
				n++
			}
		}
		return n
	}
	all := m.waitCluster(deadline, func() bool { return moved() == len(held) })
	if !all {
		m.log.Warn("draining: timed out; streams whose publisher did not come back elsewhere end here", "streams", len(held), "moved", moved())
		return
	}
	m.log.Info("draining: every stream with a publisher is on another node", "streams", len(held))
	// Their recordings here end as this node lets the streams go; each is
	// handed to the node that records its stream now, which makes one
	// recording of the two. What is left at the deadline is handed over
	// when this node is back.
	ids := map[string]bool{}
	for _, id := range held {
		ids[id] = true
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if m.waitCluster(deadline, func() bool { return m.handOver(ctx, ids) == 0 }) {
		m.log.Info("draining: done; the recordings of the streams that moved are on the nodes that have them now")
	} else {
		m.log.Warn("draining: timed out; recordings not handed over stay here until this node is back")
	}
}

// otherNodeUp says some other node is alive and not draining.
func (m *Member) otherNodeUp() bool {
	for _, n := range m.c.Nodes() {
		if n.Name != m.c.Node() && n.Alive && !n.Draining {
			return true
		}
	}
	return false
}

// waitCluster waits, on the cluster's changes, until ok or the deadline.
func (m *Member) waitCluster(deadline time.Time, ok func() bool) bool {
	for {
		ch := m.c.Changed()
		if ok() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ch:
		case <-time.After(min(left, time.Second)): // liveness ages without a change
		}
	}
}
