package webrtc

import "testing"

func TestOpusSamples(t *testing.T) {
	for _, c := range []struct {
		packet []byte
		want   int
	}{
		{nil, 0},
		{[]byte{31<<3 | 0}, 960},       // CELT 20 ms, one frame
		{[]byte{28<<3 | 0}, 120},       // CELT 2.5 ms
		{[]byte{1<<3 | 1}, 1920},       // SILK 20 ms, two frames
		{[]byte{15<<3 | 2}, 1920},      // hybrid 20 ms, two frames
		{[]byte{3<<3 | 3, 0x02}, 5760}, // SILK 60 ms, code 3 with two frames
		{[]byte{3<<3 | 3}, 0},          // code 3 without its count
	} {
		if got := OpusSamples(c.packet); got != c.want {
			t.Errorf("OpusSamples(%x) = %d, want %d", c.packet, got, c.want)
		}
	}
}
