package webrtc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// oggReader reads the Opus packets of an Ogg Opus stream (RFC 7845), as
// ffmpeg writes it with one packet per page. For each audio packet it
// returns the packet and the granule position (48 kHz samples, pre-skip
// included) at its end.
type oggReader struct {
	r       *bufio.Reader
	preSkip int64
	packets int // packets returned so far, headers included
	partial []byte
	queue   []oggPacket
}

type oggPacket struct {
	data    []byte
	granule int64 // at the end of the page the packet ends on; -1 if none ends there
}

func newOggReader(r io.Reader) *oggReader {
	return &oggReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// maxOggPacket bounds one Opus packet (a 120 ms stereo packet is under 8 KB).
const maxOggPacket = 64 << 10

var errNotOpus = errors.New("ogg: not an Opus stream")

// next returns the next audio packet and its end granule.
func (o *oggReader) next() ([]byte, int64, error) {
	for {
		for len(o.queue) > 0 {
			p := o.queue[0]
			o.queue = o.queue[1:]
			o.packets++
			switch o.packets {
			case 1:
				if len(p.data) < 19 || string(p.data[:8]) != "OpusHead" {
					return nil, 0, errNotOpus
				}
				o.preSkip = int64(binary.LittleEndian.Uint16(p.data[10:12]))
				continue
			case 2:
				continue // OpusTags
			}
			return p.data, p.granule, nil
		}
		if err := o.readPage(); err != nil {
			return nil, 0, err
		}
	}
}

// readPage reads one page and queues the packets that end on it.
func (o *oggReader) readPage() error {
	var hdr [27]byte
	if _, err := io.ReadFull(o.r, hdr[:]); err != nil {
		return err
	}
	if string(hdr[:4]) != "OggS" || hdr[4] != 0 {
		return fmt.Errorf("ogg: bad page header")
	}
	granule := int64(binary.LittleEndian.Uint64(hdr[6:14]))
	segs := make([]byte, hdr[26])
	if _, err := io.ReadFull(o.r, segs); err != nil {
		return err
	}
	first := len(o.queue)
	for _, l := range segs {
		if len(o.partial)+int(l) > maxOggPacket {
			return fmt.Errorf("ogg: packet over %d bytes", maxOggPacket)
		}
		buf := make([]byte, l)
		if _, err := io.ReadFull(o.r, buf); err != nil {
			return err
		}
		o.partial = append(o.partial, buf...)
		if l < 255 {
			o.queue = append(o.queue, oggPacket{data: o.partial, granule: -1})
			o.partial = nil
		}
	}
	// The page's granule belongs to the last packet ending on it; the ones
	// before end that many samples earlier each.
	if granule >= 0 {
		g := granule
		for i := len(o.queue) - 1; i >= first; i-- {
			o.queue[i].granule = g
			g -= int64(OpusSamples(o.queue[i].data))
		}
	}
	return nil
}
