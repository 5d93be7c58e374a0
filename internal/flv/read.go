package flv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/glasscast/glasscast/internal/stream"
)

// maxFLVTag bounds one tag read from a helper process.
const maxFLVTag = 8 << 20

// Reader reads the FLV a transcoding ffmpeg writes. Tags are size-limited;
// a malformed one is an error, never a panic.
type Reader struct {
	r       *bufio.Reader
	lenSize int
	tracks  stream.Tracks
	buf     []byte
}

// NewReader reads the FLV header from r.
func NewReader(r io.Reader) (*Reader, error) {
	f := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	var h [13]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return nil, fmt.Errorf("flv header: %w", err)
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, errors.New("flv header: not FLV")
	}
	if skip := int(binary.BigEndian.Uint32(h[5:9])) - 9; skip > 0 {
		if _, err := f.r.Discard(skip); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Tracks are the tracks the sequence headers so far described.
func (f *Reader) Tracks() stream.Tracks { return f.tracks }

// Next returns the next media unit; a sequence header updates the tracks
// and returns no unit (nil, nil).
func (f *Reader) Next() (*stream.Unit, error) {
	var h [11]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return nil, err
	}
	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	ts := time.Duration(uint32(h[7])<<24|uint32(h[4])<<16|uint32(h[5])<<8|uint32(h[6])) * time.Millisecond
	if size > maxFLVTag {
		return nil, fmt.Errorf("flv tag of %d bytes", size)
	}
	if cap(f.buf) < size+4 {
		f.buf = make([]byte, size+4)
	}
	data := f.buf[:size+4]
	if _, err := io.ReadFull(f.r, data); err != nil {
		return nil, err
	}
	data = data[:size]
	switch h[0] {
	case flvVideo:
		return f.video(data, ts)
	case flvAudio:
		return f.audio(data, ts)
	}
	return nil, nil // script data
}

func (f *Reader) video(data []byte, ts time.Duration) (*stream.Unit, error) {
	if len(data) < 5 || data[0]&0x0f != 7 {
		return nil, errors.New("flv: video is not H.264")
	}
	cts := time.Duration(int32(uint32(data[2])<<24|uint32(data[3])<<16|uint32(data[4])<<8)>>8) * time.Millisecond
	body := data[5:]
	switch data[1] {
	case 0:
		sps, pps, lenSize, err := parseAVCConfig(body)
		if err != nil {
			return nil, err
		}
		v, err := stream.NewVideo(sps, pps)
		if err != nil {
			return nil, err
		}
		f.tracks.Video, f.lenSize = v, lenSize
		return nil, nil
	case 1:
		if f.tracks.Video == nil {
			return nil, errors.New("flv: video before its configuration")
		}
		var nalus [][]byte
		for len(body) > 0 {
			if len(body) < f.lenSize {
				return nil, errors.New("flv: truncated NAL unit length")
			}
			n := 0
			for _, b := range body[:f.lenSize] {
				n = n<<8 | int(b)
			}
			body = body[f.lenSize:]
			if n > len(body) {
				return nil, errors.New("flv: NAL unit longer than its packet")
			}
			nalus = append(nalus, append([]byte(nil), body[:n]...))
			body = body[n:]
		}
		return &stream.Unit{Kind: stream.KindVideo, DTS: ts, PTS: ts + cts, Key: data[0]>>4 == 1, NALUs: nalus}, nil
	}
	return nil, nil
}

func (f *Reader) audio(data []byte, ts time.Duration) (*stream.Unit, error) {
	if len(data) < 2 || data[0]>>4 != 10 {
		return nil, errors.New("flv: audio is not AAC")
	}
	if data[1] == 0 {
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(data[2:]); err != nil {
			return nil, fmt.Errorf("flv: AAC config: %w", err)
		}
		a, err := stream.NewAudio(&conf)
		if err != nil {
			return nil, err
		}
		f.tracks.Audio = a
		return nil, nil
	}
	if f.tracks.Audio == nil {
		return nil, errors.New("flv: audio before its configuration")
	}
	return &stream.Unit{Kind: stream.KindAudio, DTS: ts, PTS: ts, Key: true, Payload: append([]byte(nil), data[2:]...)}, nil
}

// parseAVCConfig reads the first SPS and PPS of an
// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1).
func parseAVCConfig(b []byte) (sps, pps []byte, lenSize int, err error) {
	if len(b) < 7 {
		return nil, nil, 0, errAVCConfig
	}
	lenSize = int(b[4]&3) + 1
	if sps, b, err = firstParamSet(b[6:], int(b[5]&0x1f)); err != nil || len(b) < 1 {
		return nil, nil, 0, errAVCConfig
	}
	if pps, _, err = firstParamSet(b[1:], int(b[0])); err != nil {
		return nil, nil, 0, err
	}
	return sps, pps, lenSize, nil
}

var errAVCConfig = errors.New("flv: malformed AVC configuration")

// firstParamSet reads n length-prefixed parameter sets and returns the
// first, and what follows them.
func firstParamSet(b []byte, n int) (first, rest []byte, err error) {
	for i := 0; i < n; i++ {
		if len(b) < 2 || int(binary.BigEndian.Uint16(b)) > len(b)-2 {
			return nil, nil, errAVCConfig
		}
		l := int(binary.BigEndian.Uint16(b))
		if first == nil {
			first = append([]byte(nil), b[2:2+l]...)
		}
		b = b[2+l:]
	}
	if first == nil {
		return nil, nil, errAVCConfig
	}
	return first, b, nil
}
