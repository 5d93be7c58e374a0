package stream

import (
	"sync/atomic"
	"time"
)

// statsWindow is how far back bitrate and frame rate look.
const statsWindow = 5

// totals count over every hub of the process, for its metrics.
var totals struct {
	bytesIn, framesIn, dropped, publishes atomic.Uint64
}

// Totals are the process's counts since it started, over every stream:
// payload bytes and video frames taken in, units readers lost, publisher
// sessions begun (a reconnect is one more).
type Totals struct {
	BytesIn, FramesIn, Dropped, Publishes uint64
}

// ProcessTotals reads the process's totals.
func ProcessTotals() Totals {
	return Totals{BytesIn: totals.bytesIn.Load(), FramesIn: totals.framesIn.Load(), Dropped: totals.dropped.Load(), Publishes: totals.publishes.Load()}
}

// counters is updated in the publisher's path under the hub's lock.
type counters struct {
	framesIn     uint64
	audioIn      uint64
	bytesIn      uint64
	bframes      bool
	retiredDrops uint64 // drops of readers that are gone
	firstWall    time.Time
	// per-second buckets for the rates
	sec    [statsWindow]int64
	bytes  [statsWindow]uint64
	frames [statsWindow]uint64
	abytes [statsWindow]uint64 // audio's share of bytes
	// keyframe intervals and frame durations of the current session, as
	// rings of the most recent ones
	epoch    uint32
	lastKey  time.Duration
	haveKey  bool
	keyIvals [4]time.Duration
	nKey     int
	lastDTS  time.Duration
	haveDTS  bool
	deltas   [64]time.Duration
	nDelta   int
}

func (c *counters) add(u *Unit) {
	now := u.Arrival
	if c.firstWall.IsZero() {
		c.firstWall = now
	}
	s := now.Unix()
	i := s % statsWindow
	if c.sec[i] != s {
		c.sec[i], c.bytes[i], c.frames[i], c.abytes[i] = s, 0, 0, 0
	}
	size := uint64(u.Size())
	c.bytes[i] += size
	c.bytesIn += size
	totals.bytesIn.Add(size)
	if u.Epoch != c.epoch {
		c.epoch = u.Epoch
		c.haveKey, c.nKey, c.haveDTS, c.nDelta = false, 0, false, 0
	}
	if u.Kind == KindVideo {
		if c.haveDTS {
			c.deltas[c.nDelta%len(c.deltas)] = u.DTS - c.lastDTS
			c.nDelta++
		}
		c.lastDTS, c.haveDTS = u.DTS, true
		if u.Key {
			if c.haveKey {
				c.keyIvals[c.nKey%len(c.keyIvals)] = u.DTS - c.lastKey
				c.nKey++
			}
			c.lastKey, c.haveKey = u.DTS, true
		}
		c.framesIn++
		totals.framesIn.Add(1)
		c.frames[i]++
		if u.PTS != u.DTS {
			c.bframes = true
		}
	} else {
		c.audioIn++
		c.abytes[i] += size
	}
}

// Stats is a snapshot of a hub's counters.
type Stats struct {
	Tracks        *Tracks
	Publishing    bool
	Epoch         uint32
	FramesIn      uint64  // video frames written
	AudioFramesIn uint64  // audio frames written
	BytesIn       uint64  // payload bytes written
	Bitrate       int64   // bits per second over the last few seconds
	FPS           float64 // video frames per second over the last few seconds
	BFrames       bool    // the video has frames out of decode order
	Readers       int
	DroppedFrames uint64 // units readers lost to full queues
	// AudioBitrate is the audio's share of Bitrate.
	AudioBitrate int64
	// KeyInterval is the longest of the session's last few keyframe
	// intervals; 0 until two keyframes have come.
	KeyInterval time.Duration
	// FrameDurMin and FrameDurMax bound the session's last 64 frame
	// durations (a fixed frame rate has them equal, give or take the
	// millisecond timestamps of RTMP); 0 until 16 frames have come.
	FrameDurMin, FrameDurMax time.Duration
	// TimestampJumps counts the publisher's timestamps that jumped and
	// were re-anchored (see timeline).
	TimestampJumps uint64
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{
		Tracks:         h.tracks,
		Publishing:     h.pub != nil,
		Epoch:          h.epoch,
		FramesIn:       h.st.framesIn,
		AudioFramesIn:  h.st.audioIn,
		BytesIn:        h.st.bytesIn,
		BFrames:        h.st.bframes,
		Readers:        len(h.readers),
		DroppedFrames:  h.st.retiredDrops,
		TimestampJumps: h.tl.jumps,
	}
	for r := range h.readers {
		st.DroppedFrames += r.Dropped()
	}
	// Rates over the complete seconds of the window (the current one is partial).
	now := time.Now().Unix()
	var bytes, frames, abytes uint64
	secs := 0
	for i := range statsWindow {
		s := h.st.sec[i]
		if s < now && s >= now-statsWindow+1 {
			bytes += h.st.bytes[i]
			frames += h.st.frames[i]
			abytes += h.st.abytes[i]
		}
	}
	for i := range min(h.st.nKey, len(h.st.keyIvals)) {
		st.KeyInterval = max(st.KeyInterval, h.st.keyIvals[i])
	}
	if n := min(h.st.nDelta, len(h.st.deltas)); n >= 16 {
		st.FrameDurMin, st.FrameDurMax = h.st.deltas[0], h.st.deltas[0]
		for _, d := range h.st.deltas[:n] {
			st.FrameDurMin, st.FrameDurMax = min(st.FrameDurMin, d), max(st.FrameDurMax, d)
		}
	}
	if !h.st.firstWall.IsZero() {
		secs = int(min(int64(statsWindow-1), now-h.st.firstWall.Unix()))
	}
	if secs > 0 {
		st.Bitrate = int64(bytes*8) / int64(secs)
		st.AudioBitrate = int64(abytes*8) / int64(secs)
		st.FPS = float64(frames) / float64(secs)
	}
	return st
}
