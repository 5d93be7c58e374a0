package relay

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// positionSubject asks every node that relays a stream where its
// numbering stands: the node taking a stream over from an origin that died
// numbers on from the last change the relays had of it.
func positionSubject(id string) string { return "glasscast.position." + id }

// PositionWait bounds how long a node taking a stream over waits for a
// relay's answer: no answer means no node relayed it.
const PositionWait = 250 * time.Millisecond

// Recheck makes every relay look at once where its stream is (the
// directory changed): one that moved is followed to its new origin
// without waiting for the next watch.
func (r *Relays) Recheck() {
	r.mu.Lock()
	close(r.moved)
	r.moved = make(chan struct{})
	r.mu.Unlock()
}

// AnswerPositions makes this node answer other nodes' questions about
// where a stream stands: one of its own (own finds them; a node that
// drains hands its streams over exactly), or one it relays.
func (r *Relays) AnswerPositions(own cmaf.Lookup) error {
	sub, err := r.nc.Subscribe(positionSubject("*"), func(m *nats.Msg) {
		id := lastToken(m.Subject)
		if m.Reply == "" {
			return
		}
		p, ok := own(id)
		if !ok {
			var err error
			if p, err = r.Mirror(id); err != nil {
				m.Respond(nil) // neither held nor relayed here: nothing, at once
				return
			}
		}
		b, _ := json.Marshal(p.Position())
		m.Respond(b)
	})
	if err != nil {
		return err
	}
	r.answer = sub
	return nil
}

// Position is where a stream stands as the relays have it: the latest of
// this node's mirror's and every other node's (each relay may be a part
// behind another: numbering on from one that is behind would give two
// different parts one name). It waits for the others' answers (a node
// with nothing answers at once, empty) or PositionWait. False when no
// node relays it.
func (r *Relays) Position(ctx context.Context, id string, others int) (cmaf.Position, bool) {
	var best cmaf.Position
	found := false
	if p, err := r.Mirror(id); err == nil {
		best, found = p.Position(), true
	}
	if CheckName(id) != nil || others <= 0 {
		return best, found
	}
	ctx, cancel := context.WithTimeout(ctx, PositionWait)
	defer cancel()
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return best, found
	}
	defer sub.Unsubscribe()
	if r.nc.PublishRequest(positionSubject(id), inbox, nil) != nil {
		return best, found
	}
	for heard := 0; heard < others; heard++ {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		var pos cmaf.Position
		if len(m.Data) == 0 || json.Unmarshal(m.Data, &pos) != nil {
			continue
		}
		if found {
			best = cmaf.Later(best, pos)
		} else {
			best, found = pos, true
		}
	}
	return best, found
}
