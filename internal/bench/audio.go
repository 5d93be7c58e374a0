package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/glasscast/glasscast/internal/sim"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// The generated clips beep at the start of every GOP (a 1 kHz tone for
// 100 ms, silence otherwise), so a keyframe and a beep onset mark the same
// instant: the load tool finds both in what it receives and measures how far
// apart a player would put them.

// onsetThreshold is the level a beep onset crosses (a tenth of full scale).
const onsetThreshold = 3277

// onsets returns the sample indexes where sound starts after at least quiet
// samples of silence.
func onsets(pcm []int16, quiet int) []int {
	var out []int
	lastLoud := 0 // sound cut off at the start is no onset
	for i, s := range pcm {
		if s >= onsetThreshold || s <= -onsetThreshold {
			if i-lastLoud > quiet {
				out = append(out, i)
			}
			lastLoud = i
		}
	}
	return out
}

// decodePCM runs ffmpeg over input in the given format and returns mono
// 16-bit samples at rate.
func decodePCM(ffmpeg, format string, input []byte, rate int) ([]int16, error) {
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", format, "-i", "pipe:0",
		"-f", "s16le", "-ac", "1", "-ar", fmt.Sprint(rate), "pipe:1")
	cmd.Stdin = bytes.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffmpeg decoding %s: %v %s", format, err, bytes.TrimSpace(stderr.Bytes()))
	}
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(out[2*i:]))
	}
	return pcm, nil
}

// sourceOffset is how far the clip's own beep onsets are from its
// keyframes, as an AAC decoder fed the published access units hears them:
// the offset the source brings, which glasscast cannot remove.
func sourceOffset(ffmpeg string, clip *sim.Clip) (time.Duration, int, error) {
	if clip.Audio == nil {
		return 0, 0, errors.New("the clip has no audio")
	}
	var adts mpeg4audio.ADTSPackets
	first := time.Duration(-1)
	var keys []time.Duration
	for _, f := range clip.Frames {
		if f.Video {
			for _, n := range f.NALUs {
				if len(n) > 0 && n[0]&0x1f == 5 {
					keys = append(keys, f.PTS)
					break
				}
			}
			continue
		}
		if first < 0 {
			first = f.DTS
		}
		adts = append(adts, &mpeg4audio.ADTSPacket{Type: clip.Audio.Type, SampleRate: clip.Audio.SampleRate,
			ChannelConfig: clip.Audio.ChannelConfig, AU: f.AU})
	}
	raw, err := adts.Marshal()
	if err != nil {
		return 0, 0, err
	}
	rate := clip.Audio.SampleRate
	pcm, err := decodePCM(ffmpeg, "aac", raw, rate)
	if err != nil {
		return 0, 0, err
	}
	var offs []time.Duration
	for _, i := range onsets(pcm, rate/5) {
		at := first + time.Duration(i)*time.Second/time.Duration(rate)
		offs = append(offs, nearest(at, keys))
	}
	if len(offs) == 0 {
		return 0, 0, errors.New("the clip's audio has no beeps (generate it with the load tool, or give one that beeps at every keyframe)")
	}
	return median(offs), len(offs), nil
}

// nearest returns at minus the closest of marks.
func nearest(at time.Duration, marks []time.Duration) time.Duration {
	best := time.Duration(1<<62 - 1)
	for _, m := range marks {
		if d := at - m; abs(d) < abs(best) {
			best = d
		}
	}
	return best
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func median(d []time.Duration) time.Duration {
	s := summarize(d)
	return s.P50
}

// oggOpus wraps Opus packets in an Ogg stream (RFC 7845) with no pre-skip,
// so that a decoder's first sample is the first packet's first.
func oggOpus(packets [][]byte) []byte {
	var b bytes.Buffer
	var seq uint32
	page := func(flags byte, granule int64, packet []byte) {
		var lacing []byte
		n := len(packet)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		h := make([]byte, 27, 27+len(lacing)+len(packet))
		copy(h, "OggS")
		h[5] = flags
		binary.LittleEndian.PutUint64(h[6:], uint64(granule))
		binary.LittleEndian.PutUint32(h[14:], 0x676c6173) // serial
		binary.LittleEndian.PutUint32(h[18:], seq)
		h[26] = byte(len(lacing))
		h = append(h, lacing...)
		h = append(h, packet...)
		binary.LittleEndian.PutUint32(h[22:], oggCRC(h))
		b.Write(h)
		seq++
	}
	head := []byte("OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00") // v1, mono, no pre-skip, 48 kHz
	page(0x02, 0, head)
	tags := []byte("OpusTags\x09\x00\x00\x00glasscast\x00\x00\x00\x00")
	page(0, 0, tags)
	var granule int64
	for i, p := range packets {
		granule += int64(rtc.OpusSamples(p))
		flags := byte(0)
		if i == len(packets)-1 {
			flags = 0x04
		}
		page(flags, granule, p)
	}
	return b.Bytes()
}

var oggTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return
}()

// oggCRC is Ogg's page checksum: CRC-32, polynomial 0x04c11db7, not
// reflected, no final xor.
func oggCRC(b []byte) uint32 {
	var c uint32
	for _, x := range b {
		c = c<<8 ^ oggTable[byte(c>>24)^x]
	}
	return c
}
