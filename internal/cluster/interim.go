package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A directory write waits on the bucket's JetStream leader. When the node
// that held it dies, the others elect a new one, which takes seconds
// (NATS's Raft election timeouts): a stream taken over in that time would
// wait with it, and its glasses with it. Instead, a write the bucket
// cannot take now is told at once to every node over plain NATS, which
// needs no leader, as an interim entry, and made in the bucket as soon as
// it has a leader again, in the order the node made its writes. An interim
// entry stands in every node's copy of the directory until the bucket
// moves past the revision it was made on: then the bucket says what is
// true (the write landed, or another node's compare-and-set won).

// interimSubject carries the interim entries.
const interimSubject = "glasscast.directory.interim"

// interimFor bounds how long an interim entry stands without the bucket
// catching up.
const interimFor = time.Minute

// casAttempt bounds one try of a directory write: past it, the bucket is
// taken as leaderless and the write goes interim.
const casAttempt = 500 * time.Millisecond

// interim is a directory write told before the bucket took it, or (Rev
// set) one the bucket took: a node whose watch of the bucket lags (its
// consumer was on the node that died) learns of it at once all the same.
type interim struct {
	Entry   StreamEntry `json:"entry"`
	Base    uint64      `json:"base"`              // the revision it was made on
	Rev     uint64      `json:"rev,omitempty"`     // the revision it is, once the bucket took it
	Deleted bool        `json:"deleted,omitempty"` // with Rev: the entry was removed
	Node    string      `json:"node"`
	at      time.Time   // heard, by this node's clock
}

// laterWrite is a write the bucket did not take yet.
type laterWrite struct {
	id     string
	change func(e *StreamEntry, exists bool) (bool, error)
}

// unavailable says err is the bucket not answering (no leader, no
// quorum), not a refusal or a conflict.
func unavailable(err error) bool {
	var api *jetstream.APIError
	switch {
	case err == nil, conflict(err), errors.Is(err, ErrNoStream):
		return false
	case errors.As(err, &api) && api.Code == 503:
		return true // JetStream itself says so
	}
	return errors.Is(err, errAttempt) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// sayWritten tells every node (this one first) of a write the bucket
// took, at revision rev.
func (c *Cluster) sayWritten(e StreamEntry, rev uint64, deleted bool) {
	in := interim{Entry: e, Rev: rev, Deleted: deleted, Node: c.cfg.Node}
	c.heardInterim(in)
	b, _ := json.Marshal(in)
	c.nc.Publish(interimSubject, b)
}

// sayInterim tells every node (this one first) of an interim entry.
func (c *Cluster) sayInterim(e StreamEntry, base uint64) {
	in := interim{Entry: e, Base: base, Node: c.cfg.Node}
	c.heardInterim(in)
	b, _ := json.Marshal(in)
	c.nc.Publish(interimSubject, b) // buffered by the client: never blocks
}

// heardInterim puts an interim entry in this node's copy, unless the
// bucket is past its revision already.
func (c *Cluster) heardInterim(in interim) {
	if CheckNode(in.Node) != nil || in.Entry.ID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := in.Entry.ID
	switch {
	case in.Rev != 0:
		if c.revs[id] >= in.Rev {
			return // the watch had it
		}
		c.revs[id] = in.Rev
		if in.Deleted {
			delete(c.streams, id)
		} else {
			c.streams[id] = in.Entry
		}
		if i, ok := c.interims[id]; ok && in.Rev > i.Base {
			delete(c.interims, id)
		}
	case c.revs[id] > in.Base:
		return
	default:
		in.at = time.Now()
		c.interims[id] = in
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// listenInterims follows the other nodes' interim entries.
func (c *Cluster) listenInterims() error {
	sub, err := c.nc.Subscribe(interimSubject, func(m *nats.Msg) {
		var in interim
		if len(m.Data) <= maxEntry && json.Unmarshal(m.Data, &in) == nil && in.Node != c.cfg.Node {
			c.heardInterim(in)
		}
	})
	if err != nil {
		return err
	}
	c.interimSub = sub
	return nil
}

// entryLocked is a stream's entry in this node's copy: an interim one
// while it stands, else the bucket's. c.mu is held.
func (c *Cluster) entryLocked(id string) (StreamEntry, bool) {
	if in, ok := c.interims[id]; ok {
		if c.revs[id] <= in.Base && time.Since(in.at) < interimFor {
			return in.Entry, true
		}
		delete(c.interims, id)
	}
	e, ok := c.streams[id]
	return e, ok
}

// queued says some of this node's writes wait for the bucket.
func (c *Cluster) queued() bool {
	c.laterMu.Lock()
	defer c.laterMu.Unlock()
	return len(c.later) > 0
}

// writeLater queues a write for when the bucket has a leader again.
func (c *Cluster) writeLater(w laterWrite) {
	c.laterMu.Lock()
	defer c.laterMu.Unlock()
	c.later = append(c.later, w)
	if !c.writing {
		c.writing = true
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.writeQueued()
		}()
	}
}

// writeQueued makes the queued writes, in order, each once the bucket
// takes it (or refuses it), until the node leaves.
func (c *Cluster) writeQueued() {
	s := c.Streams()
	for {
		c.laterMu.Lock()
		if len(c.later) == 0 || c.ctx.Err() != nil {
			c.later, c.writing = nil, false
			c.laterMu.Unlock()
			return
		}
		w := c.later[0]
		c.laterMu.Unlock()
		for c.ctx.Err() == nil {
			_, err := s.casOnce(c.ctx, w.id, 4, w.change)
			if !unavailable(err) {
				if err != nil {
					c.log.Warn("cluster: a directory write made while the bucket had no leader was refused", "stream", w.id, "err", err)
				}
				break
			}
			select {
			case <-c.ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		c.laterMu.Lock()
		if len(c.later) > 0 {
			c.later = c.later[1:]
		}
		c.laterMu.Unlock()
	}
}
