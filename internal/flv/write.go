// Package flv reads and writes FLV (Adobe FLV spec v10.1, annex E) as
// glasscast's helper processes speak it: H.264 as AVC packets of
// length-prefixed NAL units behind an AVCDecoderConfigurationRecord, AAC
// frames behind an AudioSpecificConfig. Restream outputs that transcode and
// ABR ladders feed ffmpeg with it and read ffmpeg's output back.
package flv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/glasscast/glasscast/internal/stream"
)

// Tag types.
const (
	flvAudio = 8
	flvVideo = 9
)

// Errors Feed ends with.
var (
	// ErrStreamEnded: the hub closed (its stream ended).
	ErrStreamEnded = errors.New("the stream ended")
	// ErrTracksChanged: the source changed its parameters; a new header is
	// needed.
	ErrTracksChanged = errors.New("the source changed its tracks")
)

// Feed writes FLV to w from a hub reader, starting with first, with
// timestamps of stream time minus base, until the reader ends (ErrStreamEnded),
// the source changes its parameters (ErrTracksChanged) or a write fails. A
// slow w fills the reader's queue, which drops to the next keyframe: nothing
// upstream waits.
func Feed(ctx context.Context, w io.Writer, r *stream.Reader, first *stream.Unit, base time.Duration) error {
	tracks := first.Tracks
	fw := NewWriter(w)
	err := fw.Header(tracks)
	for unit := first; err == nil; {
		if unit.Kind != stream.KindEnd && unit.DTS >= base {
			if unit.Tracks != tracks && !unit.Tracks.SameParams(tracks) {
				return ErrTracksChanged
			}
			err = fw.Unit(unit, base)
			if err == nil && r.Len() == 0 {
				err = fw.Flush()
			}
		}
		if err != nil {
			break
		}
		unit, err = r.Read(ctx)
		if errors.Is(err, stream.ErrClosed) {
			err = ErrStreamEnded
		}
	}
	return err
}

// Writer writes an FLV stream (Adobe FLV spec v10.1, E.4): H.264 as AVC
// packets of 4-byte length-prefixed NAL units, AAC as raw frames, each
// behind its sequence header.
type Writer struct {
	w     *bufio.Writer
	video bool
	audio bool
	tag   bytes.Buffer
}

// NewWriter makes a writer to w, buffered: Flush sends what is written.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// Flush writes out what is buffered.
func (f *Writer) Flush() error { return f.w.Flush() }

// Header writes the FLV header and the tracks' sequence headers.
func (f *Writer) Header(t *stream.Tracks) error {
	flags := byte(0)
	if t.Video != nil {
		flags |= 1
		f.video = true
	}
	if t.Audio != nil {
		flags |= 4
		f.audio = true
	}
	if _, err := f.w.Write([]byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}); err != nil {
		return err
	}
	if v := t.Video; v != nil {
		rec := []byte{1, v.SPS[1], v.SPS[2], v.SPS[3], 0xff, 0xe1}
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(v.SPS)))
		rec = append(rec, v.SPS...)
		rec = append(rec, 1)
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(v.PPS)))
		rec = append(rec, v.PPS...)
		if err := f.write(flvVideo, 0, append([]byte{0x17, 0, 0, 0, 0}, rec...)); err != nil {
			return err
		}
	}
	if a := t.Audio; a != nil {
		asc, err := a.Config.Marshal()
		if err != nil {
			return err
		}
		if err := f.write(flvAudio, 0, append([]byte{0xaf, 0}, asc...)); err != nil {
			return err
		}
	}
	return nil
}

// Unit writes one media unit with its timestamp less base; a unit of a
// track the header did not have is left out.
func (f *Writer) Unit(u *stream.Unit, base time.Duration) error {
	ts := uint32((u.DTS - base) / time.Millisecond)
	switch {
	case u.Kind == stream.KindVideo && f.video:
		f.tag.Reset()
		kind := byte(0x27)
		if u.Key {
			kind = 0x17
		}
		cts := int32((u.PTS - u.DTS) / time.Millisecond)
		f.tag.Write([]byte{kind, 1, byte(cts >> 16), byte(cts >> 8), byte(cts)})
		var l [4]byte
		for _, n := range u.NALUs {
			binary.BigEndian.PutUint32(l[:], uint32(len(n)))
			f.tag.Write(l[:])
			f.tag.Write(n)
		}
		return f.write(flvVideo, ts, f.tag.Bytes())
	case u.Kind == stream.KindAudio && f.audio:
		f.tag.Reset()
		f.tag.Write([]byte{0xaf, 1})
		f.tag.Write(u.Payload)
		return f.write(flvAudio, ts, f.tag.Bytes())
	}
	return nil
}

func (f *Writer) write(kind byte, ts uint32, data []byte) error {
	var h [11]byte
	h[0] = kind
	h[1], h[2], h[3] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	h[4], h[5], h[6], h[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
	if _, err := f.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := f.w.Write(data); err != nil {
		return err
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], uint32(11+len(data)))
	_, err := f.w.Write(tail[:])
	return err
}
