package control

import (
	"strconv"

	"github.com/glasscast/glasscast/protocol"
)

// keepAlive is a stream's keep-alive with the glasses, as the real cloud
// runs it: every interval a keep_rtmp_stream_alive with a fresh ackId; an ack
// not back within the ack timeout is a miss; enough misses in a row and the
// stream has timed out. Ticks while the phone is away count no miss. Only
// acks count as signs of life: the real cloud also counts any status of the
// stream, which lets glasses that report stats but ignore keep-alives run
// forever. Every method runs under the user's lock.
type keepAlive struct {
	u         *User
	streamID  string
	onTimeout func()
	tick      Timer
	pending   map[string]Timer
	missed    int
	stopped   bool
}

func (u *User) startKeepAlive(streamID string, onTimeout func()) *keepAlive {
	k := &keepAlive{u: u, streamID: streamID, onTimeout: onTimeout, pending: map[string]Timer{}}
	k.schedule()
	return k
}

func (k *keepAlive) schedule() {
	k.tick = k.u.after(k.u.p.cfg.KeepAliveInterval, func() {
		if k.stopped {
			return
		}
		k.send()
		if !k.stopped {
			k.schedule()
		}
	})
}

func (k *keepAlive) send() {
	ackID := "a" + lastDigits(strconv.FormatInt(k.u.p.cfg.Clock.Now().UnixNano()/1e6, 36), 5)
	for k.pending[ackID] != nil {
		ackID += "x" // two ticks in one millisecond, in tests
	}
	if !k.u.sendGlassesLocked(protocol.KeepRTMPStreamAlive{Type: protocol.TypeKeepRTMPStreamAlive, StreamID: k.streamID, AckID: ackID}) {
		return // the phone is away: no keep-alive, no miss
	}
	k.pending[ackID] = k.u.after(k.u.p.cfg.AckTimeout, func() {
		if k.stopped || k.pending[ackID] == nil {
			return
		}
		delete(k.pending, ackID)
		k.missed++
		k.u.p.log.Info("keep-alive missed", "user", k.u.id, "stream", k.streamID, "missed", k.missed)
		if k.missed >= k.u.p.cfg.MaxMissedAcks {
			k.stop()
			k.onTimeout()
		}
	})
}

func lastDigits(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ack clears a pending keep-alive.
func (k *keepAlive) ack(ackID string) {
	if k == nil {
		return
	}
	if t := k.pending[ackID]; t != nil {
		t.Stop()
		delete(k.pending, ackID)
		k.missed = 0
	}
}

func (k *keepAlive) stop() {
	if k == nil || k.stopped {
		return
	}
	k.stopped = true
	k.tick.Stop()
	for id, t := range k.pending {
		t.Stop()
		delete(k.pending, id)
	}
}
