// Package stream is the hub at the centre of every live stream: one
// publisher writes access units into it, and any number of readers (the
// CMAF packager behind LL-HLS and DASH, WebRTC viewers, the recorder, restream
// outputs) take them out, each through its own bounded queue.
//
// The hub owns the stream's timeline. Timestamps are rebased so that the
// first unit is at zero and they stay monotonic across publisher reconnects;
// SPS and PPS are prepended to every keyframe, once, in the publisher's path;
// the last group of pictures is cached so a new reader starts at a keyframe
// at once. A reader that falls behind loses units up to the next keyframe and
// the loss is counted: nothing a reader does can stall the publisher or
// another reader.
package stream

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// Kind says whether a unit is video or audio.
type Kind uint8

// Kinds of units. The zero value is invalid.
const (
	KindVideo Kind = iota + 1
	KindAudio
	// KindEnd marks the end of a publisher session. It carries no media and
	// reaches every reader, in order, so outputs can finish what they hold.
	KindEnd
)

func (k Kind) String() string {
	switch k {
	case KindVideo:
		return "video"
	case KindAudio:
		return "audio"
	case KindEnd:
		return "end"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Video describes an H.264 track.
type Video struct {
	SPS, PPS  []byte
	Width     int
	Height    int
	FrameRate float64 // from the SPS timing info; 0 when the SPS does not say
	Profile   uint8
	Compat    uint8
	Level     uint8
}

// Codec is the RFC 6381 codec string, as HLS and DASH want it ("avc1.64001f").
func (v *Video) Codec() string {
	return fmt.Sprintf("avc1.%02x%02x%02x", v.Profile, v.Compat, v.Level)
}

// NewVideo checks an SPS and PPS pair and describes the track they open.
func NewVideo(sps, pps []byte) (*Video, error) {
	if len(sps) < 4 || len(pps) < 1 {
		return nil, errors.New("H.264 parameter sets are missing")
	}
	if h264.NALUType(sps[0]&0x1f) != h264.NALUTypeSPS || h264.NALUType(pps[0]&0x1f) != h264.NALUTypePPS {
		return nil, errors.New("H.264 parameter sets are malformed")
	}
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		return nil, fmt.Errorf("H.264 SPS: %w", err)
	}
	return &Video{
		SPS:       bytes.Clone(sps),
		PPS:       bytes.Clone(pps),
		Width:     s.Width(),
		Height:    s.Height(),
		FrameRate: s.FPS(),
		Profile:   sps[1],
		Compat:    sps[2],
		Level:     sps[3],
	}, nil
}

// Audio describes an AAC track.
type Audio struct {
	Config     mpeg4audio.AudioSpecificConfig
	SampleRate int
	Channels   int
}

// Codec is the RFC 6381 codec string ("mp4a.40.2").
func (a *Audio) Codec() string {
	return fmt.Sprintf("mp4a.40.%d", a.Config.Type)
}

// NewAudio accepts AAC-LC, mono or stereo, at 8 to 48 kHz.
func NewAudio(conf *mpeg4audio.AudioSpecificConfig) (*Audio, error) {
	if conf == nil {
		return nil, errors.New("AAC configuration is missing")
	}
	if conf.Type != mpeg4audio.ObjectTypeAACLC {
		return nil, fmt.Errorf("AAC object type %d is not supported: publish AAC-LC", conf.Type)
	}
	if conf.ChannelConfig < 1 || conf.ChannelConfig > 2 {
		return nil, fmt.Errorf("AAC channel configuration %d is not supported: publish mono or stereo", conf.ChannelConfig)
	}
	if conf.SampleRate < 8000 || conf.SampleRate > 48000 {
		return nil, fmt.Errorf("AAC sample rate %d Hz is not supported: publish 44.1 or 48 kHz", conf.SampleRate)
	}
	return &Audio{Config: *conf, SampleRate: conf.SampleRate, Channels: int(conf.ChannelConfig)}, nil
}

// Tracks is what a stream carries. A Tracks value is never modified once
// units refer to it: a change of parameters makes a new value, so a reader
// sees a change by comparing pointers.
type Tracks struct {
	Video *Video
	Audio *Audio
}

// Validate says why a track set cannot be published.
func (t *Tracks) Validate() error {
	if t == nil || (t.Video == nil && t.Audio == nil) {
		return errors.New("the stream has neither video nor audio")
	}
	return nil
}

// SameShape reports whether both sets carry the same kinds of tracks with the
// same audio format, which is what a reader's outputs are built around.
func (t *Tracks) SameShape(o *Tracks) bool {
	if (t.Video == nil) != (o.Video == nil) || (t.Audio == nil) != (o.Audio == nil) {
		return false
	}
	if t.Audio != nil && (t.Audio.SampleRate != o.Audio.SampleRate || t.Audio.Channels != o.Audio.Channels) {
		return false
	}
	return true
}

// SameParams reports whether both sets need the same sequence headers: the
// same shape, the same H.264 parameter sets and the same audio config.
func (t *Tracks) SameParams(b *Tracks) bool {
	if t == b {
		return true
	}
	if !t.SameShape(b) {
		return false
	}
	if t.Video != nil && (!bytes.Equal(t.Video.SPS, b.Video.SPS) || !bytes.Equal(t.Video.PPS, b.Video.PPS)) {
		return false
	}
	if t.Audio != nil && t.Audio.Config != b.Audio.Config {
		return false
	}
	return true
}
