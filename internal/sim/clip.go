// Package sim is glasscast's test source: it publishes a real H.264 + AAC
// stream over RTMP from a short clip, looped with rewritten timestamps, and
// stamps every video frame with its wall-clock send time in an SEI message
// (package sei) so latency can be measured end to end. The glasses simulator,
// the demo stream, the tests and the load tool all push through it.
package sim

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/glasscast/glasscast/internal/stream"
)

// DefaultClip is the clip committed with the source: 8 s of 1280x720 at 30
// fps, H.264 Main without B-frames, a keyframe every 2 s, AAC-LC mono at
// 44.1 kHz, fragmented MP4 (how it was made: testdata/README.md).
//
//go:embed testdata/clip.mp4
var DefaultClip []byte

// MaxClipBytes bounds the clips LoadClip accepts.
const MaxClipBytes = 256 << 20

// Frame is one access unit of a clip, in decode order within its kind.
type Frame struct {
	Video bool
	DTS   time.Duration
	PTS   time.Duration
	NALUs [][]byte // video
	AU    []byte   // audio
}

// Clip is a loaded clip, ready to be looped.
type Clip struct {
	SPS, PPS []byte
	Audio    *mpeg4audio.AudioSpecificConfig
	// Frames interleaves video and audio in DTS order.
	Frames []Frame
	// Duration is the loop period: the video's length, or the audio's when
	// there is no video.
	Duration time.Duration
}

// LoadClip reads a fragmented MP4 with one H.264 track and at most one AAC
// track (either may be absent, not both).
func LoadClip(data []byte) (*Clip, error) {
	if len(data) > MaxClipBytes {
		return nil, fmt.Errorf("clip is larger than %d bytes", MaxClipBytes)
	}
	var initBytes, fragBytes []byte
	for b := data; len(b) > 0; {
		if len(b) < 8 {
			return nil, errors.New("clip: truncated box header")
		}
		size := uint64(binary.BigEndian.Uint32(b))
		hdr := uint64(8)
		if size == 1 {
			if len(b) < 16 {
				return nil, errors.New("clip: truncated box header")
			}
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size == 0 {
			size = uint64(len(b))
		}
		if size < hdr || size > uint64(len(b)) {
			return nil, errors.New("clip: box size out of range")
		}
		box := b[:size]
		switch string(b[4:8]) {
		case "ftyp", "moov":
			initBytes = append(initBytes, box...)
		case "moof", "mdat":
			fragBytes = append(fragBytes, box...)
		}
		b = b[size:]
	}
	var init fmp4.Init
	if err := init.Unmarshal(bytes.NewReader(initBytes)); err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(fragBytes); err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}

	c := &Clip{}
	scales := map[int]uint32{}
	videoID, audioID := -1, -1
	for _, t := range init.Tracks {
		if t.TimeScale == 0 {
			return nil, errors.New("clip: track without a time scale")
		}
		switch codec := t.Codec.(type) {
		case *codecs.H264:
			if videoID < 0 {
				videoID, c.SPS, c.PPS = t.ID, codec.SPS, codec.PPS
			}
		case *codecs.MPEG4Audio:
			if audioID < 0 {
				conf := codec.Config
				audioID, c.Audio = t.ID, &conf
			}
		}
		scales[t.ID] = t.TimeScale
	}
	if videoID < 0 && audioID < 0 {
		return nil, errors.New("clip: no H.264 or AAC track")
	}

	var videoEnd, audioEnd time.Duration
	for _, p := range parts {
		for _, pt := range p.Tracks {
			if pt.ID != videoID && pt.ID != audioID {
				continue
			}
			scale := time.Duration(scales[pt.ID])
			ticks := pt.BaseTime
			for _, s := range pt.Samples {
				dts := time.Duration(ticks) * time.Second / scale
				end := time.Duration(ticks+uint64(s.Duration)) * time.Second / scale
				ticks += uint64(s.Duration)
				if pt.ID == videoID {
					var au h264.AVCC
					if err := au.Unmarshal(s.Payload); err != nil {
						return nil, fmt.Errorf("clip: video sample: %w", err)
					}
					pts := dts + time.Duration(s.PTSOffset)*time.Second/scale
					c.Frames = append(c.Frames, Frame{Video: true, DTS: dts, PTS: pts, NALUs: au})
					videoEnd = max(videoEnd, end)
				} else {
					c.Frames = append(c.Frames, Frame{DTS: dts, PTS: dts, AU: s.Payload})
					audioEnd = max(audioEnd, end)
				}
			}
		}
	}
	c.Duration = videoEnd
	if videoID < 0 {
		c.Duration = audioEnd
	}
	if c.Duration <= 0 {
		return nil, errors.New("clip: no samples")
	}
	// Audio past the end of the video would overlap the next loop.
	kept := c.Frames[:0]
	for _, f := range c.Frames {
		if f.DTS < c.Duration {
			kept = append(kept, f)
		}
	}
	c.Frames = kept
	sort.SliceStable(c.Frames, func(i, j int) bool { return c.Frames[i].DTS < c.Frames[j].DTS })
	return c, nil
}

// WithoutAudio returns the clip's video only.
func (c *Clip) WithoutAudio() *Clip {
	out := *c
	out.Audio = nil
	out.Frames = nil
	for _, f := range c.Frames {
		if f.Video {
			out.Frames = append(out.Frames, f)
		}
	}
	return &out
}

// WithoutVideo returns the clip's audio only.
func (c *Clip) WithoutVideo() *Clip {
	out := *c
	out.SPS, out.PPS = nil, nil
	out.Frames = nil
	for _, f := range c.Frames {
		if !f.Video {
			out.Frames = append(out.Frames, f)
		}
	}
	return &out
}

// Tracks describes the clip's tracks as the hub knows them.
func (c *Clip) Tracks() (*stream.Tracks, error) {
	var t stream.Tracks
	var err error
	if c.SPS != nil {
		if t.Video, err = stream.NewVideo(c.SPS, c.PPS); err != nil {
			return nil, err
		}
	}
	if c.Audio != nil {
		if t.Audio, err = stream.NewAudio(c.Audio); err != nil {
			return nil, err
		}
	}
	return &t, t.Validate()
}

// DefaultTracks are the tracks of DefaultClip (H.264 and AAC-LC).
func DefaultTracks() (*stream.Tracks, error) {
	c, err := LoadClip(DefaultClip)
	if err != nil {
		return nil, err
	}
	return c.Tracks()
}

// WriteFrame writes frame i of the clip, shifted by base, into a hub's
// publisher.
func (c *Clip) WriteFrame(pub *stream.Publisher, i int, base time.Duration) error {
	f := &c.Frames[i]
	if f.Video {
		return pub.WriteVideo(base+f.PTS, base+f.DTS, f.NALUs)
	}
	return pub.WriteAudio(base+f.DTS, f.AU)
}

// Write writes the clip's frames from..to, shifted by base, as fast as it
// goes.
func (c *Clip) Write(pub *stream.Publisher, from, to int, base time.Duration) error {
	for i := from; i < to; i++ {
		if err := c.WriteFrame(pub, i, base); err != nil {
			return err
		}
	}
	return nil
}
