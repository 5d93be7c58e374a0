package sei

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	cases := []time.Time{
		time.Unix(0, 0),
		time.Unix(1, 0), // zero bytes that need emulation prevention
		time.Unix(1_800_000_000, 123_456_789),
		time.Unix(0, 3),
		time.Unix(0, 0x0000000300000003),
	}
	for _, want := range cases {
		nalu := Marshal(want)
		for i := 2; i < len(nalu); i++ {
			if nalu[i-2] == 0 && nalu[i-1] == 0 && nalu[i] <= 2 {
				t.Fatalf("%v: start code emulation at %d in %x", want, i, nalu)
			}
		}
		got, ok := Parse(nalu)
		if !ok || !got.Equal(want) {
			t.Fatalf("Parse(Marshal(%v)) = %v, %v", want, got, ok)
		}
	}
}

func TestFindAmongOtherNALUs(t *testing.T) {
	now := time.Unix(1_750_000_000, 42)
	other := []byte{0x06, 0x05, 0x10}
	other = append(other, bytes.Repeat([]byte{0xaa}, 16)...)
	other = append(other, 0x80)
	au := [][]byte{{0x65, 1, 2, 3}, other, Marshal(now)}
	got, ok := Find(au)
	if !ok || !got.Equal(now) {
		t.Fatalf("Find = %v, %v", got, ok)
	}

	var avcc []byte
	for _, n := range au {
		avcc = binary.BigEndian.AppendUint32(avcc, uint32(len(n)))
		avcc = append(avcc, n...)
	}
	got, ok = FindAVCC(avcc)
	if !ok || !got.Equal(now) {
		t.Fatalf("FindAVCC = %v, %v", got, ok)
	}
}

func TestParseRejects(t *testing.T) {
	for name, nalu := range map[string][]byte{
		"empty":       nil,
		"not SEI":     {0x65, 0x05, 0x18},
		"truncated":   Marshal(time.Unix(5, 5))[:10],
		"other UUID":  append([]byte{0x06, 0x05, 24}, make([]byte, 25)...),
		"size beyond": {0x06, 0x05, 0xff, 0x10},
		"endless ff":  append([]byte{0x06}, bytes.Repeat([]byte{0xff}, 20)...),
	} {
		if _, ok := Parse(nalu); ok {
			t.Errorf("%s: Parse accepted %x", name, nalu)
		}
	}
	if _, ok := FindAVCC([]byte{0, 0, 0, 9, 1}); ok {
		t.Error("FindAVCC accepted a length beyond the sample")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Marshal(time.Unix(1_700_000_000, 1)))
	f.Add([]byte{0x06, 0x05, 0xff, 0x10})
	f.Add([]byte{0x06, 0xff, 0xff, 0x01, 0x00, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ts, ok := Parse(b); ok {
			// Anything accepted must survive a round trip.
			if got, ok2 := Parse(Marshal(ts)); !ok2 || !got.Equal(ts) {
				t.Fatalf("round trip of %v failed", ts)
			}
		}
		FindAVCC(b)
	})
}
