package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
)

// The download is a progressive MP4 (ftyp, then moov with every sample's
// table, then one mdat): what editors, phones and players all open. Its
// header is made by mediacommon's pmp4 from the samples' sizes, durations
// and flags read out of the stored fragments' moof boxes; the payloads are
// read from the fragments as the file is served, in the order the header
// lays them out. A recording over the 4 GiB that 32-bit chunk offsets reach
// is served as a fragmented MP4 instead.

// sampleRef is where a sample's payload is stored.
type sampleRef struct {
	path string
	off  int64
	size uint32
}

// errHeaderOnly stops pmp4 once the header is written.
var errHeaderOnly = errors.New("header only")

// progressive builds the MP4's header and the list of payload pieces.
func (sn *snapshot) progressive() (*mp4Index, error) {
	if len(sn.segs) == 0 {
		return nil, errors.New("no segments")
	}
	first := sn.segs[0].Init
	in := sn.inits[first]
	var pres pmp4.Presentation
	refs := map[*pmp4.Sample]sampleRef{}
	index := map[string]int{}
	starts := make([]uint64, len(in.Tracks))
	ends := make([]uint64, len(in.Tracks))
	started := make([]bool, len(in.Tracks))
	tracks, err := sn.initTracks(first)
	if err != nil {
		return nil, err
	}
	for i, t := range in.Tracks {
		pres.Tracks = append(pres.Tracks, &pmp4.Track{ID: tracks[i].ID, TimeScale: t.Timescale, Codec: tracks[i].Codec})
		index[t.Name] = i
	}
	var total uint64
	buf := make([]byte, 4096)
	for _, sr := range sn.segs {
		if sr.Init != first && !sameTimescales(sn.inits[sr.Init], in) {
			continue // a new clock: the HLS playlist has it
		}
		for _, tr := range sr.Tracks {
			i, ok := index[tr.Name]
			if !ok {
				continue
			}
			path := filepath.Join(sn.dir, segFile(tr.Name, sr.Seq))
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			off := int64(0)
			for _, size := range tr.Parts {
				frag, err := readMoof(f, off, buf)
				if err != nil {
					f.Close()
					return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
				}
				track := pres.Tracks[i]
				if !started[i] {
					started[i], starts[i], ends[i] = true, frag.baseTime, frag.baseTime
				}
				if frag.baseTime > ends[i] && len(track.Samples) > 0 {
					// A gap (the publisher was away): the last picture or
					// sound lasts until the media comes back.
					last := track.Samples[len(track.Samples)-1]
					last.Duration += uint32(min(frag.baseTime-ends[i], 1<<31))
				}
				pos := off + int64(frag.dataAt)
				t := frag.baseTime
				for _, s := range frag.samples {
					smp := &pmp4.Sample{Duration: s.dur, PTSOffset: s.cts, IsNonSyncSample: !s.sync, PayloadSize: s.size}
					track.Samples = append(track.Samples, smp)
					refs[smp] = sampleRef{path: path, off: pos, size: s.size}
					pos += int64(s.size)
					total += uint64(s.size)
					t += uint64(s.dur)
				}
				ends[i] = max(ends[i], t)
				off += int64(size)
			}
			f.Close()
		}
	}
	if total >= 1<<32-1<<20 {
		return nil, errTooLarge
	}
	// Tracks start where their first sample is against the earliest one.
	var earliest float64 = -1
	for i, t := range pres.Tracks {
		if started[i] {
			s := float64(starts[i]) / float64(t.TimeScale)
			if earliest < 0 || s < earliest {
				earliest = s
			}
		}
	}
	var kept []*pmp4.Track
	for i, t := range pres.Tracks {
		if len(t.Samples) == 0 {
			continue
		}
		t.TimeOffset = int32((float64(starts[i])/float64(t.TimeScale) - earliest) * float64(t.TimeScale))
		kept = append(kept, t)
	}
	pres.Tracks = kept

	// One pass with empty payloads gives the header and the payloads' order.
	var hdr headerCapture
	var order []*pmp4.Sample
	zeros := make([]byte, 0)
	for _, t := range pres.Tracks {
		for _, s := range t.Samples {
			s.GetPayload = func() ([]byte, error) {
				order = append(order, s)
				if int(s.PayloadSize) > len(zeros) {
					zeros = make([]byte, s.PayloadSize)
				}
				return zeros[:s.PayloadSize], nil
			}
		}
	}
	if err := pres.Marshal(&hdr); err != nil {
		return nil, err
	}
	m := &mp4Index{}
	m.add(piece{mem: hdr.head, size: int64(len(hdr.head))})
	for _, s := range order {
		r := refs[s]
		m.add(piece{path: r.path, off: r.off, size: int64(r.size), raw: true})
	}
	if m.size != int64(len(hdr.head))+int64(total) {
		return nil, fmt.Errorf("the MP4 would be %d bytes, not %d", m.size, int64(len(hdr.head))+int64(total))
	}
	return m, nil
}

var errTooLarge = errors.New("over 4 GiB")

func sameTimescales(a, b *initRec) bool {
	if a == nil || len(a.Tracks) != len(b.Tracks) {
		return false
	}
	for i := range a.Tracks {
		if a.Tracks[i].Name != b.Tracks[i].Name || a.Tracks[i].Timescale != b.Tracks[i].Timescale || a.Tracks[i].Codec != b.Tracks[i].Codec {
			return false
		}
	}
	return true
}

// headerCapture keeps what pmp4 writes before the first payload: ftyp, moov
// and the mdat's header. It counts the rest.
type headerCapture struct {
	head   []byte
	writes int
}

func (h *headerCapture) Write(p []byte) (int, error) {
	// pmp4 writes ftyp+moov in one call, then the mdat size and type.
	if h.writes < 3 {
		h.head = append(h.head, p...)
	}
	h.writes++
	return len(p), nil
}

// fragSamples is what a moof says of its samples.
type fragInfo struct {
	baseTime uint64
	dataAt   uint32 // the first sample's offset from the moof's start
	samples  []fragSampleInfo
}

type fragSampleInfo struct {
	dur  uint32
	size uint32
	cts  int32
	sync bool
}

// maxFragSamples bounds the samples of one stored fragment (a part is
// about 200 ms: a few frames).
const maxFragSamples = 1 << 14

// readMoof reads the moof at off in f and the trun of its one track.
func readMoof(f io.ReaderAt, off int64, buf []byte) (fragInfo, error) {
	var fi fragInfo
	var head [8]byte
	if _, err := f.ReadAt(head[:], off); err != nil {
		return fi, err
	}
	size := binary.BigEndian.Uint32(head[:4])
	if string(head[4:]) != "moof" || size < 8 || size > 16<<20 {
		return fi, errors.New("not a moof")
	}
	if int(size) > len(buf) {
		buf = make([]byte, size)
	}
	moof := buf[:size]
	if _, err := f.ReadAt(moof, off); err != nil && err != io.EOF {
		return fi, err
	}
	traf := child(moof[8:], "traf")
	if traf == nil {
		return fi, errors.New("moof without traf")
	}
	tfhd := child(traf, "tfhd")
	if len(tfhd) < 8 {
		return fi, errors.New("traf without tfhd")
	}
	tfFlags := binary.BigEndian.Uint32(tfhd[0:4]) & 0xffffff
	p := 8 // version/flags, track id
	var defDur, defSize, defFlags uint32
	if tfFlags&0x01 != 0 {
		p += 8 // base data offset
	}
	if tfFlags&0x02 != 0 {
		p += 4
	}
	if tfFlags&0x08 != 0 && len(tfhd) >= p+4 {
		defDur = binary.BigEndian.Uint32(tfhd[p:])
		p += 4
	}
	if tfFlags&0x10 != 0 && len(tfhd) >= p+4 {
		defSize = binary.BigEndian.Uint32(tfhd[p:])
		p += 4
	}
	if tfFlags&0x20 != 0 && len(tfhd) >= p+4 {
		defFlags = binary.BigEndian.Uint32(tfhd[p:])
	}
	if tfdt := child(traf, "tfdt"); len(tfdt) >= 8 {
		if tfdt[0] == 1 && len(tfdt) >= 12 {
			fi.baseTime = binary.BigEndian.Uint64(tfdt[4:])
		} else {
			fi.baseTime = uint64(binary.BigEndian.Uint32(tfdt[4:]))
		}
	}
	trun := child(traf, "trun")
	if len(trun) < 8 {
		return fi, errors.New("traf without trun")
	}
	flags := binary.BigEndian.Uint32(trun[0:4]) & 0xffffff
	count := binary.BigEndian.Uint32(trun[4:8])
	if count > maxFragSamples {
		return fi, fmt.Errorf("a fragment of %d samples", count)
	}
	p = 8
	if opt := 4 * (int(flags&0x01) + int(flags&0x04)>>2); len(trun) < p+opt {
		return fi, errors.New("short trun")
	}
	if flags&0x01 != 0 {
		fi.dataAt = binary.BigEndian.Uint32(trun[p:])
		p += 4
	} else {
		fi.dataAt = size + 8
	}
	firstFlags, hasFirst := uint32(0), false
	if flags&0x04 != 0 {
		firstFlags, hasFirst = binary.BigEndian.Uint32(trun[p:]), true
		p += 4
	}
	for k := uint32(0); k < count; k++ {
		s := fragSampleInfo{dur: defDur, size: defSize}
		sf := defFlags
		if k == 0 && hasFirst {
			sf = firstFlags
		}
		need := 0
		for _, bit := range []uint32{0x100, 0x200, 0x400, 0x800} {
			if flags&bit != 0 {
				need += 4
			}
		}
		if len(trun) < p+need {
			return fi, errors.New("short trun")
		}
		if flags&0x100 != 0 {
			s.dur = binary.BigEndian.Uint32(trun[p:])
			p += 4
		}
		if flags&0x200 != 0 {
			s.size = binary.BigEndian.Uint32(trun[p:])
			p += 4
		}
		if flags&0x400 != 0 {
			sf = binary.BigEndian.Uint32(trun[p:])
			p += 4
		}
		if flags&0x800 != 0 {
			s.cts = int32(binary.BigEndian.Uint32(trun[p:]))
			p += 4
		}
		s.sync = sf&0x00010000 == 0 // sample_is_non_sync_sample clear
		fi.samples = append(fi.samples, s)
	}
	return fi, nil
}

// child returns the payload of the first box of type typ among the boxes in
// b (after the box header; for full boxes, from their version/flags on).
func child(b []byte, typ string) []byte {
	for len(b) >= 8 {
		size := int(binary.BigEndian.Uint32(b[:4]))
		if size < 8 || size > len(b) {
			return nil
		}
		if string(b[4:8]) == typ {
			return b[8:size]
		}
		b = b[size:]
	}
	return nil
}
