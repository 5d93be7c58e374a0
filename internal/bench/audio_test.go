package bench

import (
	"math"
	"testing"
)

func TestOnsets(t *testing.T) {
	pcm := make([]int16, 48000)
	beep := func(at, n int) {
		for i := range n {
			pcm[at+i] = int16(16000 * math.Sin(2*math.Pi*1000*float64(i)/48000))
		}
	}
	beep(0, 2000)     // cut off at the start: not an onset
	beep(12000, 4800) // after 10000 quiet samples
	beep(20000, 100)  // too soon after the last
	beep(40000, 4800)
	got := onsets(pcm, 9600)
	// The sine (half scale) crosses a tenth of full scale on its third sample.
	want := []int{12002, 40002}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("onsets %v, want %v", got, want)
	}
}
