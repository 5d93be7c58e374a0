package stream

import (
	"bytes"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// videoCodec is the per-codec step of a publisher's video: what the hub
// needs to know of an access unit, whatever its codec. The hub itself only
// keeps parameter sets apart, waits for a keyframe and puts the current
// parameter sets in front of each one. A new codec is a new videoCodec.
type videoCodec interface {
	// split takes the parameter sets and delimiters out of an access unit
	// and says whether what is left starts a group of pictures.
	split(au [][]byte) (params, rest [][]byte, key bool)
	// update returns the track with the parameter sets params replaced, or
	// nil when they are what cur has.
	update(cur *Video, params [][]byte) (*Video, error)
	// prefix is what a keyframe of v carries in front: its parameter sets.
	prefix(v *Video) [][]byte
}

// h264Codec is H.264 (ITU-T H.264 7.4.1.2): SPS and PPS apart, IDRs are
// keyframes, access unit delimiters dropped.
type h264Codec struct{}

func (h264Codec) split(au [][]byte) (params, rest [][]byte, key bool) {
	rest = make([][]byte, 0, len(au))
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS, h264.NALUTypePPS:
			params = append(params, n)
			continue
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		case h264.NALUTypeIDR:
			key = true
		}
		rest = append(rest, n)
	}
	return params, rest, key
}

func (h264Codec) update(cur *Video, params [][]byte) (*Video, error) {
	sps, pps := cur.SPS, cur.PPS
	for _, n := range params {
		if h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
			sps = n
		} else {
			pps = n
		}
	}
	if bytes.Equal(sps, cur.SPS) && bytes.Equal(pps, cur.PPS) {
		return nil, nil
	}
	return NewVideo(sps, pps)
}

func (h264Codec) prefix(v *Video) [][]byte { return [][]byte{v.SPS, v.PPS} }

// withPrefix puts prefix in front of rest (once per keyframe).
func withPrefix(prefix, rest [][]byte) [][]byte {
	if len(prefix) == 0 {
		return rest
	}
	out := make([][]byte, 0, len(prefix)+len(rest))
	return append(append(out, prefix...), rest...)
}
