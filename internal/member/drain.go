package member

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

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
	// Every other node relays these streams before their publishers go:
	// the node a publisher reaches next starts from the window its relay
	// has (playable at once, its parts listed as they come), not from
	// nothing (a second, the first segment).
	m.prewarm(held, deadline)
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
	// The users' sessions go with their phones to the nodes these reach
	// (handed over when asked); those whose phone has not come back by
	// the end are let go as they are, for the node it reaches later.
	defer m.p().Plane.DetachAll(int(drainClose), drainCloseReason)
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

// prewarmSubject asks every node to relay the streams named (a JSON
// array of ids) and to answer once it has their windows.
const prewarmSubject = "glasscast.relay.prewarm"

// prewarmWait bounds how long a draining node waits for the others to
// relay its streams.
const prewarmWait = 2 * time.Second

// prewarm has the other live nodes relay ids, waiting for their answers
// for at most prewarmWait (and never past deadline).
func (m *Member) prewarm(ids []string, deadline time.Time) {
	if len(ids) == 0 {
		return
	}
	others := 0
	for _, n := range m.c.Nodes() {
		if n.Name != m.c.Node() && n.Alive && !n.Draining {
			others++
		}
	}
	q, _ := json.Marshal(ids)
	nc := m.c.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return
	}
	defer sub.Unsubscribe()
	if nc.PublishRequest(prewarmSubject, inbox, q) != nil {
		return
	}
	until := time.Now().Add(prewarmWait)
	if deadline.Before(until) {
		until = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	start := time.Now()
	answered := 0
	for answered < others {
		if _, err := sub.NextMsgWithContext(ctx); err != nil {
			break
		}
		answered++
	}
	m.log.Info("draining: the other nodes relay this node's streams", "streams", len(ids), "nodes", answered, "of", others, "took", time.Since(start).Round(time.Millisecond))
}

// servePrewarm relays, on a draining node's asking, its streams here.
func (m *Member) servePrewarm() error {
	var bg sync.WaitGroup
	sub, err := m.c.Conn().Subscribe(prewarmSubject, func(msg *nats.Msg) {
		var ids []string
		if msg.Reply == "" || len(msg.Data) > 64<<10 || json.Unmarshal(msg.Data, &ids) != nil {
			return
		}
		if m.draining.Load() {
			return // the asker's own question, or another node's while this one drains
		}
		bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), prewarmWait)
			defer cancel()
			var wg sync.WaitGroup
			for _, id := range ids {
				if _, err := m.reg.Get(id); err == nil {
					continue // here already
				}
				wg.Go(func() { m.relays.Packager(ctx, id) })
			}
			wg.Wait()
			msg.Respond([]byte("ok"))
		})
	})
	if err != nil {
		return err
	}
	stop := sync.OnceFunc(func() { sub.Unsubscribe(); bg.Wait() })
	prev := m.stopSessions
	m.stopSessions = func() { stop(); prev() }
	m.undo.push(stop)
	return nil
}
