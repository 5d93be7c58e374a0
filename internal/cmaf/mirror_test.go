package cmaf_test

import (
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
)

// A mirror started from a snapshot taken mid-stream and fed the source's
// changes through their wire encoding ends up in the source's state, through
// a publisher reconnect, a window that moves on, and the end; a lost change
// is refused.
func TestMirror(t *testing.T) {
	src := cmaftest.New(t, cmaf.Config{Window: 4})
	src.Feed(t, 1)

	var mu sync.Mutex
	var wire [][]byte
	src.P.Journal(func(n uint64, op *cmaf.Op) {
		mu.Lock()
		wire = append(wire, cmaf.EncodeOp(n, op))
		mu.Unlock()
	})
	snap, err := cmaf.DecodeSnapshot(cmaf.EncodeSnapshot(src.P.Snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := cmaf.NewMirror(snap)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "from the snapshot", src.P, mirror)

	apply := func() {
		t.Helper()
		mu.Lock()
		msgs := wire
		wire = nil
		mu.Unlock()
		for _, b := range msgs {
			n, op, err := cmaf.DecodeOp(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := mirror.Apply(n, op); err != nil {
				t.Fatalf("change %d (%d): %v", n, op.Kind, err)
			}
		}
	}
	src.Feed(t, 2) // the window moves past the snapshot's segments
	apply()
	same(t, "after two more loops", src.P, mirror)

	// A ladder starts: the mirror learns its rungs' ids, and lists a rung
	// once it is given the rung's packager (a mirror of it, on a relay).
	rung := cmaftest.New(t, cmaf.Config{Window: 4})
	rung.Feed(t, 1)
	src.P.SetVariants([]cmaf.Variant{{ID: "rung-480", P: rung.P}})
	apply()
	same(t, "with a ladder", src.P, mirror)
	var ids []string
	mirror.View(func(v *cmaf.View) { ids = v.Variants })
	if !reflect.DeepEqual(ids, []string{"rung-480"}) || len(mirror.Variants()) != 0 {
		t.Fatalf("the mirror names rungs %v and lists %d before they are linked", ids, len(mirror.Variants()))
	}
	mirror.LinkVariants([]cmaf.Variant{{ID: "rung-480", P: rung.P}})
	if vs := mirror.Variants(); len(vs) != 1 || vs[0].ID != "rung-480" {
		t.Fatalf("the mirror lists %+v", vs)
	}
	rung.End(t)

	// The publisher reconnects: a discontinuity.
	tracks, err := src.Clip.Tracks()
	if err != nil {
		t.Fatal(err)
	}
	src.Pub.Close(nil)
	cmaftest.Drain(t, src.R, src.P)
	if src.Pub, err = src.Hub.Publish(tracks); err != nil {
		t.Fatal(err)
	}
	src.Feed(t, 1)
	apply()
	same(t, "after a reconnect", src.P, mirror)

	// A lost change: refused, and the mirror stays as it was.
	src.Feed(t, 1)
	mu.Lock()
	lost := wire
	wire = nil
	mu.Unlock()
	before := mirror.Snapshot()
	n, op, _ := cmaf.DecodeOp(lost[1])
	if err := mirror.Apply(n, op); !errors.Is(err, cmaf.ErrGap) {
		t.Fatalf("a change after a lost one: %v", err)
	}
	if !reflect.DeepEqual(before, mirror.Snapshot()) {
		t.Fatal("a refused change changed the mirror")
	}
	// A new snapshot puts it right, in place.
	if err := mirror.Restore(src.P.Snapshot()); err != nil {
		t.Fatal(err)
	}
	src.End(t)
	apply()
	same(t, "after the end", src.P, mirror)
	ended := false
	mirror.View(func(v *cmaf.View) { ended = v.Ended })
	if !ended {
		t.Fatal("the mirror did not end")
	}
}

// same fails unless a and b are in the same state.
func same(t *testing.T, when string, a, b *cmaf.Packager) {
	t.Helper()
	sa, sb := a.Snapshot(), b.Snapshot()
	if len(sa.Segments) == 0 {
		t.Fatalf("%s: the source has no segments", when)
	}
	if !reflect.DeepEqual(sa, sb) {
		t.Fatalf("%s: the mirror differs from its source:\nsource %+v\nmirror %+v", when, summary(sa), summary(sb))
	}
}

func summary(s *cmaf.Snapshot) []any {
	out := []any{s.N, s.Current, s.Ended}
	for _, seg := range s.Segments {
		parts := 0
		for _, ts := range seg.Tracks {
			parts += len(ts.Parts)
		}
		out = append(out, [3]uint64{seg.Seq, uint64(len(seg.Tracks)), uint64(parts)})
	}
	return out
}

// FuzzDecodeOp: a change read from the network is refused or read back
// into what encodes to the same bytes; nothing panics.
func FuzzDecodeOp(f *testing.F) {
	src := cmaftest.New(f, cmaf.Config{})
	var seeds [][]byte
	src.P.Journal(func(n uint64, op *cmaf.Op) {
		if len(seeds) < 40 {
			seeds = append(seeds, cmaf.EncodeOp(n, op))
		}
	})
	src.Feed(f, 1)
	seeds = append(seeds, cmaf.EncodeOp(1, &cmaf.Op{Kind: cmaf.OpVariants, IDs: []string{"a", "rung-480"}}))
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, op, err := cmaf.DecodeOp(b)
		if err != nil {
			return
		}
		again := cmaf.EncodeOp(n, op)
		n2, op2, err := cmaf.DecodeOp(again)
		if err != nil || n2 != n || !reflect.DeepEqual(op, op2) {
			t.Fatalf("read back differently: %v", err)
		}
	})
}
