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
		p, ok := own(id)
		if !ok {
			var err error
			if p, err = r.Mirror(id); err != nil {
				return // neither held nor relayed here: nothing to say
			}
		}
		if m.Reply == "" {
			return
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

// Position is where a stream stands as the relays have it: this node's
// mirror's, or the first answer of another node's within PositionWait.
// False when no node relays it.
func (r *Relays) Position(ctx context.Context, id string) (cmaf.Position, bool) {
	if p, err := r.Mirror(id); err == nil {
		return p.Position(), true
	}
	if CheckName(id) != nil {
		return cmaf.Position{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, PositionWait)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, positionSubject(id), nil)
	if err != nil {
		return cmaf.Position{}, false
	}
	var pos cmaf.Position
	if json.Unmarshal(m.Data, &pos) != nil {
		return cmaf.Position{}, false
	}
	return pos, true
}
