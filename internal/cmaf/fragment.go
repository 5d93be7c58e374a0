package cmaf

import "encoding/binary"

// fragSample is one sample of a fragment: a video access unit (written as
// 4-byte length-prefixed NAL units) or an audio frame.
type fragSample struct {
	dur   uint32
	cts   int32 // composition offset
	sync  bool
	nalus [][]byte // video
	data  []byte   // audio
}

func (s *fragSample) size() int {
	if s.nalus == nil {
		return len(s.data)
	}
	n := 0
	for _, nalu := range s.nalus {
		n += 4 + len(nalu)
	}
	return n
}

// Sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample depends on no other;
// any other depends on others and is not a sync sample.
const (
	flagsSync    = 0x02000000
	flagsNonSync = 0x01010000
)

// trun flags.
const (
	trunDataOffset = 0x000001
	trunDuration   = 0x000100
	trunSize       = 0x000200
	trunFlags      = 0x000400
	trunCTS        = 0x000800
)

// fragment builds one moof+mdat for track 1, in a buffer of exactly its size:
// the samples' bytes are copied once, from the publisher's buffers into the
// fragment, and nothing else is allocated.
func fragment(seq uint32, baseTime uint64, samples []*fragSample) []byte {
	flags := trunDataOffset | trunDuration | trunSize
	payload := 0
	for _, s := range samples {
		payload += s.size()
		if !s.sync {
			flags |= trunFlags
		}
		if s.cts != 0 {
			flags |= trunCTS
		}
	}
	entry := 8
	if flags&trunFlags != 0 {
		entry += 4
	}
	if flags&trunCTS != 0 {
		entry += 4
	}
	const (
		mfhdSize = 16
		tfhdSize = 16
		tfdtSize = 20
	)
	trunSize := 8 + 4 + 4 + 4 + entry*len(samples)
	trafSize := 8 + tfhdSize + tfdtSize + trunSize
	moofSize := 8 + mfhdSize + trafSize
	total := moofSize + 8 + payload

	b := make([]byte, 0, total)
	box := func(size int, typ string) {
		b = binary.BigEndian.AppendUint32(b, uint32(size))
		b = append(b, typ...)
	}
	u32 := func(v uint32) { b = binary.BigEndian.AppendUint32(b, v) }

	box(moofSize, "moof")
	box(mfhdSize, "mfhd")
	u32(0) // version, flags
	u32(seq)
	box(trafSize, "traf")
	box(tfhdSize, "tfhd")
	u32(0x020000) // default-base-is-moof
	u32(1)        // track ID
	box(tfdtSize, "tfdt")
	u32(1 << 24) // version 1: 64-bit time
	b = binary.BigEndian.AppendUint64(b, baseTime)
	box(trunSize, "trun")
	u32(1<<24 | uint32(flags)) // version 1: signed composition offsets
	u32(uint32(len(samples)))
	u32(uint32(moofSize + 8)) // data offset: from the moof to the mdat's payload
	for _, s := range samples {
		u32(s.dur)
		u32(uint32(s.size()))
		if flags&trunFlags != 0 {
			if s.sync {
				u32(flagsSync)
			} else {
				u32(flagsNonSync)
			}
		}
		if flags&trunCTS != 0 {
			u32(uint32(s.cts))
		}
	}
	box(8+payload, "mdat")
	for _, s := range samples {
		if s.nalus == nil {
			b = append(b, s.data...)
			continue
		}
		for _, nalu := range s.nalus {
			u32(uint32(len(nalu)))
			b = append(b, nalu...)
		}
	}
	return b
}
