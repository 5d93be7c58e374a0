package member

import "testing"

func TestByteRange(t *testing.T) {
	for _, c := range []struct {
		h          string
		start, end int64
		ranged     bool
	}{
		{"", 0, -1, false},
		{"bytes=0-99", 0, 99, true},
		{"bytes=100-", 100, -1, true},
		{"bytes=-500", -500, -1, true},
		{"bytes= 7-8", 7, 8, true},
		{"bytes=0-1,5-6", 0, -1, false}, // several: the whole file
		{"bytes=9-3", 0, -1, false},
		{"bytes=-0", 0, -1, false},
		{"bytes=-", 0, -1, false},
		{"bytes=a-3", 0, -1, false},
		{"items=0-3", 0, -1, false},
		{"bytes=99999999999999999999-", 0, -1, false},
	} {
		start, end, ranged := byteRange(c.h)
		if start != c.start || end != c.end || ranged != c.ranged {
			t.Errorf("byteRange(%q) = %d, %d, %v; want %d, %d, %v", c.h, start, end, ranged, c.start, c.end, c.ranged)
		}
	}
}
