// Package sei writes and reads the wall-clock timestamp glasscast's test
// source puts in every H.264 frame: an SEI message of type "user data
// unregistered" (ITU-T H.264 D.1.7) carrying our UUID and the Unix time in
// nanoseconds at which the frame was sent. A reader anywhere downstream (an
// HLS or DASH client, a WebRTC receiver, the browser) subtracts it from its
// own clock to measure end-to-end latency.
package sei

import (
	"encoding/binary"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// UUID marks our timestamp among other user-data SEI messages.
var UUID = [16]byte{'G', 'L', 'A', 'S', 'S', 'C', 'A', 'S', 'T', ':', 'S', 'E', 'N', 'T', 'A', 'T'}

const (
	payloadTypeUserDataUnregistered = 5
	payloadSize                     = 16 + 8
	// MaxNALU bounds what Parse looks at; a real SEI is far smaller.
	MaxNALU = 64 << 10
)

// Marshal returns an SEI NAL unit carrying t.
func Marshal(t time.Time) []byte {
	raw := make([]byte, 0, 3+payloadSize+1)
	raw = append(raw, byte(h264.NALUTypeSEI), payloadTypeUserDataUnregistered, payloadSize)
	raw = append(raw, UUID[:]...)
	raw = binary.BigEndian.AppendUint64(raw, uint64(t.UnixNano()))
	raw = append(raw, 0x80) // rbsp_trailing_bits
	return addEmulationPrevention(raw)
}

// addEmulationPrevention inserts 0x03 wherever two zero bytes are followed by
// a byte of value 3 or less (H.264 7.4.1).
func addEmulationPrevention(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+4)
	zeros := 0
	for _, b := range raw {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// Parse reads our timestamp out of one NAL unit. It reports false for any
// other NAL unit, for other SEI messages and for malformed input.
func Parse(nalu []byte) (time.Time, bool) {
	if len(nalu) < 2 || len(nalu) > MaxNALU || h264.NALUType(nalu[0]&0x1f) != h264.NALUTypeSEI {
		return time.Time{}, false
	}
	b := h264.EmulationPreventionRemove(nalu[1:])
	for len(b) > 0 && b[0] != 0x80 {
		typ, n := readVar(b)
		if n == 0 {
			return time.Time{}, false
		}
		b = b[n:]
		size, n := readVar(b)
		if n == 0 || size > len(b)-n {
			return time.Time{}, false
		}
		b = b[n:]
		msg := b[:size]
		b = b[size:]
		if typ == payloadTypeUserDataUnregistered && size == payloadSize && [16]byte(msg[:16]) == UUID {
			ns := int64(binary.BigEndian.Uint64(msg[16:]))
			return time.Unix(0, ns), true
		}
	}
	return time.Time{}, false
}

// readVar reads an SEI payload type or size: a run of 0xFF bytes, each adding
// 255, ended by a last byte. It returns the value and the bytes read, or 0
// bytes when the input ends first.
func readVar(b []byte) (int, int) {
	v := 0
	for i, c := range b {
		if i > 8 {
			return 0, 0
		}
		v += int(c)
		if c != 0xff {
			return v, i + 1
		}
	}
	return 0, 0
}

// Find returns the timestamp carried by an access unit, if any.
func Find(au [][]byte) (time.Time, bool) {
	for _, n := range au {
		if t, ok := Parse(n); ok {
			return t, true
		}
	}
	return time.Time{}, false
}

// FindAVCC returns the timestamp in a sample made of 4-byte length-prefixed
// NAL units, as stored in MP4.
func FindAVCC(sample []byte) (time.Time, bool) {
	for len(sample) >= 4 {
		n := int(binary.BigEndian.Uint32(sample))
		sample = sample[4:]
		if n > len(sample) || n < 0 {
			return time.Time{}, false
		}
		if t, ok := Parse(sample[:n]); ok {
			return t, true
		}
		sample = sample[n:]
	}
	return time.Time{}, false
}
