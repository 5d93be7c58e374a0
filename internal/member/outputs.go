package member

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/store"
)

// A Streams API stream's outputs go where the stream goes. Its origin
// keeps them in its database, and in the stream's directory entry, sealed
// (an output's URL holds a platform's stream key): a node that takes the
// stream over keeps them in its own database and starts them again from
// there, with their ids.

// outputsShared is what this node last wrote of its streams' outputs, and
// the outputs of the streams it took over, until they start here.
type outputsShared struct {
	mu      sync.Mutex
	written map[string]string         // stream id → the outputs' JSON
	pending map[string][]store.Output // stream id → to start here
}

func outputsSubject(id string) string { return "glasscast.outputs." + id }

// outputsOf is a durable stream's outputs as this node keeps them: their
// JSON and sealed ("" for none).
func (m *Member) outputsOf(ctx context.Context, id string) (plain, sealed string, err error) {
	outs, err := m.cfg.Store.Outputs(ctx, id)
	if err != nil {
		return "", "", err
	}
	b, err := json.Marshal(outs)
	if err != nil || len(outs) == 0 {
		return string(b), "", err
	}
	return string(b), base64.StdEncoding.EncodeToString(m.seal.Seal(outputsSubject(id), b)), nil
}

// shareOutputs writes the outputs of this node's durable streams into
// their entries where they changed (every heartbeat: outputs are added
// and removed through the API, on this node or forwarded to it).
func (m *Member) shareOutputs(ctx context.Context, dir *cluster.Streams) {
	me := m.c.Node()
	for _, st := range m.reg.List() {
		if !st.Durable() || st.Status() == live.StatusEnded {
			continue
		}
		if e, ok := dir.Lookup(st.ID()); !ok || e.Origin != me {
			continue
		}
		plain, sealed, err := m.outputsOf(ctx, st.ID())
		if err != nil {
			continue // again at the next heartbeat
		}
		m.outputs.mu.Lock()
		same := m.outputs.written[st.ID()] == plain
		m.outputs.mu.Unlock()
		if same {
			continue
		}
		wrote, err := dir.Change(ctx, st.ID(), func(cur *cluster.StreamEntry, exists bool) bool {
			if !exists || cur.Origin != me {
				return false
			}
			cur.Outputs = sealed
			return true
		})
		if err == nil {
			m.outputs.mu.Lock()
			if wrote {
				m.outputs.written[st.ID()] = plain
			}
			m.outputs.mu.Unlock()
		}
	}
	m.outputs.mu.Lock()
	if len(m.outputs.written) > 2*len(m.reg.List())+64 {
		clear(m.outputs.written)
	}
	m.outputs.mu.Unlock()
}

// takeOutputs reads the outputs of a stream this node takes over from
// its entry, to start once the stream is here.
func (m *Member) takeOutputs(e cluster.StreamEntry) {
	if e.Outputs == "" {
		return
	}
	var outs []store.Output
	sealed, err := base64.StdEncoding.DecodeString(e.Outputs)
	if err == nil {
		var plain []byte
		if plain, err = m.seal.Open(outputsSubject(e.ID), sealed); err == nil {
			err = json.Unmarshal(plain, &outs)
		}
	}
	if err != nil {
		m.log.Warn("the outputs of a stream taken over could not be read; they do not start here", "stream", e.ID, "err", err)
		return
	}
	m.outputs.mu.Lock()
	m.outputs.pending[e.ID] = outs
	m.outputs.mu.Unlock()
}

// startOutputs starts, on a stream taken over, the outputs it had on its
// origin, and keeps them here.
func (m *Member) startOutputs(ev live.Event) {
	if ev.Kind != live.EventCreated {
		return
	}
	id := ev.Stream.ID()
	m.outputs.mu.Lock()
	outs, ok := m.outputs.pending[id]
	delete(m.outputs.pending, id)
	m.outputs.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	started := 0
	for _, o := range outs {
		o.StreamID = id
		if err := m.cfg.Store.PutOutput(ctx, o); err != nil {
			m.log.Warn("an output of a stream taken over not kept here", "stream", id, "output", o.ID, "err", err)
		}
		if _, err := m.p().Outputs.Add(ev.Stream, restream.Request{ID: o.ID, URL: o.URL, Name: o.Name, Profile: o.Profile, Owner: o.Owner}); err != nil {
			m.log.Warn("an output of a stream taken over not started", "stream", id, "output", o.ID, "url", restream.Redact(o.URL), "err", err)
			continue
		}
		started++
	}
	m.log.Info("the outputs of a stream taken over start here", "stream", id, "outputs", started)
}
