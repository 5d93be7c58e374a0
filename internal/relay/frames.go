package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/stream"
)

// A stream's frames, unit by unit, for what plays from a hub (WebRTC,
// thumbnails) on a node that is not the stream's origin. The origin reads
// its hub for each node that asks (askFrames and the node's name, every
// Watch), from the cached keyframe on, and publishes every unit on
// glasscast.frames.<id>.<node>; that node publishes them into a hub of its
// own. Each node's feed starts at a keyframe with the tracks in front.

const askFrames = "frames "

func framesSubject(id, node string) string { return "glasscast.frames." + id + "." + node }

// Frame messages: a kind byte, then the kind's fields, big-endian.
const (
	frameTracks = 't' // len16 SPS, len16 PPS, len16 AudioSpecificConfig (empty: no such track)
	frameVideo  = 'v' // key8, epoch32, dts64, pts64, n16, n × (len32, NALU)
	frameAudio  = 'a' // epoch32, dts64, len32, AAC frame
	frameEnd    = 'e' // epoch32: the publisher session ended
)

// maxFrame bounds a frame message a relay accepts.
const maxFrame = 16 << 20

func encodeTracks(t *stream.Tracks) []byte {
	b := []byte{frameTracks}
	put := func(p []byte) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	if t.Video != nil {
		put(t.Video.SPS)
		put(t.Video.PPS)
	} else {
		put(nil)
		put(nil)
	}
	var asc []byte
	if t.Audio != nil {
		asc, _ = t.Audio.Config.Marshal()
	}
	put(asc)
	return b
}

func decodeTracks(b []byte) (*stream.Tracks, error) {
	var parts [3][]byte
	for i := range parts {
		if len(b) < 2 {
			return nil, errors.New("relay: short tracks")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("relay: short tracks")
		}
		parts[i], b = b[2:2+n], b[2+n:]
	}
	t := &stream.Tracks{}
	var err error
	if len(parts[0]) > 0 {
		if t.Video, err = stream.NewVideo(parts[0], parts[1]); err != nil {
			return nil, err
		}
	}
	if len(parts[2]) > 0 {
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(parts[2]); err != nil {
			return nil, fmt.Errorf("relay: audio config: %w", err)
		}
		if t.Audio, err = stream.NewAudio(&conf); err != nil {
			return nil, err
		}
	}
	return t, t.Validate()
}

func encodeUnit(u *stream.Unit) []byte {
	switch u.Kind {
	case stream.KindVideo:
		n := 1 + 1 + 4 + 8 + 8 + 2
		for _, nalu := range u.NALUs {
			n += 4 + len(nalu)
		}
		b := make([]byte, 0, n)
		key := byte(0)
		if u.Key {
			key = 1
		}
		b = append(b, frameVideo, key)
		b = binary.BigEndian.AppendUint32(b, u.Epoch)
		b = binary.BigEndian.AppendUint64(b, uint64(u.DTS))
		b = binary.BigEndian.AppendUint64(b, uint64(u.PTS))
		b = binary.BigEndian.AppendUint16(b, uint16(len(u.NALUs)))
		for _, nalu := range u.NALUs {
			b = binary.BigEndian.AppendUint32(b, uint32(len(nalu)))
			b = append(b, nalu...)
		}
		return b
	case stream.KindAudio:
		b := make([]byte, 0, 1+4+8+4+len(u.Payload))
		b = append(b, frameAudio)
		b = binary.BigEndian.AppendUint32(b, u.Epoch)
		b = binary.BigEndian.AppendUint64(b, uint64(u.DTS))
		b = binary.BigEndian.AppendUint32(b, uint32(len(u.Payload)))
		return append(b, u.Payload...)
	default:
		return binary.BigEndian.AppendUint32([]byte{frameEnd}, u.Epoch)
	}
}

// unitMsg is a decoded unit message.
type unitMsg struct {
	kind     byte
	epoch    uint32
	dts, pts time.Duration
	nalus    [][]byte
	payload  []byte
}

var errShortFrame = errors.New("relay: a short frame message")

func decodeUnit(b []byte) (unitMsg, error) {
	var m unitMsg
	if len(b) < 5 {
		return m, errShortFrame
	}
	m.kind = b[0]
	switch m.kind {
	case frameEnd:
		m.epoch = binary.BigEndian.Uint32(b[1:])
	case frameAudio:
		if len(b) < 17 {
			return m, errShortFrame
		}
		m.epoch = binary.BigEndian.Uint32(b[1:])
		m.dts = time.Duration(binary.BigEndian.Uint64(b[5:]))
		m.pts = m.dts
		n := int(binary.BigEndian.Uint32(b[13:]))
		if len(b)-17 != n {
			return m, errShortFrame
		}
		m.payload = b[17:]
	case frameVideo:
		if len(b) < 24 {
			return m, errShortFrame
		}
		// b[1] says keyframe: the relay's publisher finds keyframes itself.
		m.epoch = binary.BigEndian.Uint32(b[2:])
		m.dts = time.Duration(binary.BigEndian.Uint64(b[6:]))
		m.pts = time.Duration(binary.BigEndian.Uint64(b[14:]))
		count := int(binary.BigEndian.Uint16(b[22:]))
		rest := b[24:]
		for range count {
			if len(rest) < 4 {
				return m, errShortFrame
			}
			n := int(binary.BigEndian.Uint32(rest))
			if len(rest)-4 < n {
				return m, errShortFrame
			}
			m.nalus = append(m.nalus, rest[4:4+n])
			rest = rest[4+n:]
		}
		if len(rest) != 0 || len(m.nalus) == 0 {
			return m, errShortFrame
		}
	default:
		return m, fmt.Errorf("relay: a frame message of kind %q", m.kind)
	}
	return m, nil
}

// HubLookup finds a stream's hub.
type HubLookup func(id string) (*stream.Hub, bool)

// framesFeed publishes one stream's units while someone watches.
type framesFeed struct {
	id, node string
	hub      *stream.Hub
	watched  atomic.Int64
}

// watchFrames makes sure the stream's units are published for node, for
// Forget more.
func (o *Origin) watchFrames(id, node string, hub *stream.Hub) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.Err() != nil {
		return
	}
	key := id + "." + node
	f := o.frames[key]
	if f != nil && f.hub != hub {
		f = nil
	}
	if f == nil {
		f = &framesFeed{id: id, node: node, hub: hub}
		o.frames[key] = f
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.publishFrames(f)
		}()
	}
	f.watched.Store(time.Now().UnixNano())
}

// publishFrames sends a stream's units, from its cached keyframe on, until
// nobody has asked for them for Forget or the hub closes.
func (o *Origin) publishFrames(f *framesFeed) {
	r := f.hub.NewReader("relay", 1024)
	defer r.Close()
	key := f.id + "." + f.node
	defer func() {
		o.mu.Lock()
		if o.frames[key] == f {
			delete(o.frames, key)
		}
		o.mu.Unlock()
	}()
	subject := framesSubject(f.id, f.node)
	var sent *stream.Tracks
	for {
		ctx, cancel := context.WithTimeout(o.ctx, Watch)
		u, err := r.Read(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			if time.Since(time.Unix(0, f.watched.Load())) > Forget {
				return
			}
			continue
		}
		if err != nil {
			return // the hub closed, or the node is leaving
		}
		if u.Kind != stream.KindEnd && u.Tracks != nil && u.Tracks != sent {
			o.nc.Publish(subject, encodeTracks(u.Tracks))
			sent = u.Tracks
		}
		if u.Kind == stream.KindEnd {
			sent = nil
		}
		o.nc.Publish(subject, encodeUnit(u))
	}
}

// hubRelay is one stream's hub on this node, fed with the origin's units.
type hubRelay struct {
	id    string
	hub   *stream.Hub
	ready chan struct{} // closed once the hub has its first unit, or err is set
	err   error
	used  atomic.Int64
}

// Hub returns a hub of another node's stream, with its units as the origin
// has them, starting the relay on the first request (which waits, within
// ctx, until the hub has the stream's first unit: its cached keyframe).
func (r *Relays) Hub(ctx context.Context, id string) (*stream.Hub, error) {
	r.mu.Lock()
	hr := r.hubs[id]
	if hr == nil {
		if r.ctx.Err() != nil {
			r.mu.Unlock()
			return nil, ErrNotHere
		}
		hr = &hubRelay{id: id, hub: stream.New(stream.Config{KeepTimestamps: true}), ready: make(chan struct{})}
		r.hubs[id] = hr
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.runHub(hr)
		}()
	}
	r.mu.Unlock()
	hr.used.Store(time.Now().UnixNano())
	select {
	case <-hr.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if hr.err != nil {
		return nil, hr.err
	}
	return hr.hub, nil
}

// runHub feeds a relay hub until the stream ends at the origin, nobody has
// used it for Idle, or the node shuts down.
func (r *Relays) runHub(hr *hubRelay) {
	var once sync.Once
	ready := func(err error) {
		once.Do(func() {
			hr.err = err
			close(hr.ready)
		})
	}
	defer func() {
		r.mu.Lock()
		if r.hubs[hr.id] == hr {
			delete(r.hubs, hr.id)
		}
		r.mu.Unlock()
		hr.hub.Close()
		ready(ErrNotHere)
	}()
	ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
	origin, err := r.locate(ctx, hr.id)
	cancel()
	if err != nil {
		ready(err)
		return
	}
	msgs := make(chan *nats.Msg, 4096)
	sub, err := r.nc.ChanSubscribe(framesSubject(hr.id, r.node), msgs)
	if err != nil {
		ready(fmt.Errorf("relay: %w", err))
		return
	}
	defer sub.Unsubscribe()
	ask := func() { r.nc.Publish(requestSubject(origin, hr.id), []byte(askFrames+r.node)) }
	ask()
	first := time.NewTimer(snapshotWait)
	defer first.Stop()
	watch := time.NewTicker(Watch)
	defer watch.Stop()
	var pub *stream.Publisher
	defer func() {
		if pub != nil {
			pub.Close(nil)
		}
	}()
	// A stream that moved is asked of its new origin until it sends: it
	// may not have the stream yet when the directory says it does.
	reask := time.NewTicker(250 * time.Millisecond)
	defer reask.Stop()
	moving := false
	moved := func() bool {
		now, err := r.still(hr.id, origin)
		if err != nil {
			return false // over
		}
		if now != origin {
			// Its publisher went to another node: the hub goes on, fed by
			// it, and its viewers with it (stream time goes on there).
			origin, moving = now, true
			r.log.Debug("relay: frames follow the stream", "stream", hr.id, "origin", origin)
			ask()
		}
		return true
	}
	for {
		r.mu.Lock()
		movedCh := r.moved
		r.mu.Unlock()
		select {
		case <-movedCh:
			if !moved() {
				return
			}
		case <-reask.C:
			if moving {
				ask()
			}
		case m := <-msgs:
			moving = false
			if len(m.Data) == 0 || len(m.Data) > maxFrame {
				continue
			}
			if m.Data[0] == frameTracks {
				t, err := decodeTracks(m.Data[1:])
				if err != nil {
					r.log.Warn("relay: the origin's tracks", "stream", hr.id, "err", err)
					continue
				}
				if cur := hr.hub.Tracks(); pub == nil || cur == nil || !cur.SameParams(t) {
					if pub != nil {
						pub.Close(nil)
					}
					if pub, err = hr.hub.Publish(t); err != nil {
						pub = nil
						continue
					}
				}
				continue
			}
			u, err := decodeUnit(m.Data)
			if err != nil || pub == nil {
				continue
			}
			switch u.kind {
			case frameEnd:
				pub.Close(nil)
				pub = nil
			case frameVideo:
				pub.WriteVideo(u.pts, u.dts, u.nalus)
				ready(nil) // with the cached keyframe: a picture at once
			case frameAudio:
				pub.WriteAudio(u.dts, u.payload)
				ready(nil)
			}
		case <-first.C:
			ready(fmt.Errorf("relay: stream %s: no frames from %s", hr.id, origin))
		case <-watch.C:
			if hr.hub.Readers() == 0 && time.Since(time.Unix(0, hr.used.Load())) > Idle {
				return
			}
			if !moved() {
				return // over: closing the hub ends its viewers
			}
			ask()
		case <-r.ctx.Done():
			return
		}
	}
}
