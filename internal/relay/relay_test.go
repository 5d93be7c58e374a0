package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
	"github.com/glasscast/glasscast/internal/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// natsPair runs a NATS server and connects twice to it: the origin's
// connection and the relay node's.
func natsPair(t *testing.T) (*nats.Conn, *nats.Conn) {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	a, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		b.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return a, b
}

// caughtUp waits until the mirror has the source's every part, then
// checks the two are in the same state.
func caughtUp(t *testing.T, src, mirror *cmaf.Packager) {
	t.Helper()
	want := src.Snapshot()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := mirror.Wait(ctx, func(v *cmaf.View) bool {
		return reflect.DeepEqual(v.NextPart, want.NextPart) && v.Ended == want.Ended
	})
	if err != nil && !errors.Is(err, cmaf.ErrEnded) {
		t.Fatalf("the mirror did not catch up: %v", err)
	}
	if got := mirror.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the mirror differs: %d changes, the source %d", got.N, want.N)
	}
}

// originOfS1 is node n1 serving stream s1 (two loops of the clip so far)
// on the first of two NATS connections.
func originOfS1(t *testing.T) (onc, rnc *nats.Conn, src *cmaftest.Source) {
	t.Helper()
	onc, rnc = natsPair(t)
	src = cmaftest.New(t, cmaf.Config{Window: 4})
	src.Feed(t, 2)
	origin, err := ServeOrigin(onc, "n1", func(id string) (*cmaf.Packager, bool) { return src.P, id == "s1" }, func(id string) (*stream.Hub, bool) { return src.Hub, id == "s1" }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(origin.Close)
	return onc, rnc, src
}

// A relay node's first request gets the origin's stream as it is; the
// mirror follows every change after that, through the end; a stream the
// origin does not have is refused, and an unknown origin is an error.
func TestRelay(t *testing.T) {
	onc, rnc, src := originOfS1(t)
	relays := NewRelays(rnc, "n2", func(ctx context.Context, id string) (string, error) {
		if id == "lost" {
			return "", errors.New("nobody has it")
		}
		return "n1", nil
	}, quiet)
	defer relays.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mirror, err := relays.Packager(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	caughtUp(t, src.P, mirror)
	if again, err := relays.Packager(ctx, "s1"); err != nil || again != mirror {
		t.Fatalf("a second request got %p %v, want the same relay", again, err)
	}
	src.Feed(t, 2) // past the snapshot's window
	caughtUp(t, src.P, mirror)
	// A change out of order (as after a lost one): the relay starts again
	// from a new snapshot, in place.
	bogus := nats.NewMsg(mediaSubject("s1"))
	bogus.Header.Set(hdrOrigin, "n1")
	bogus.Data = cmaf.EncodeOp(1<<40, &cmaf.Op{Kind: cmaf.OpSkip})
	if err := onc.PublishMsg(bogus); err != nil {
		t.Fatal(err)
	}
	// A change from a node that is not the stream's origin is not taken.
	stray := nats.NewMsg(mediaSubject("s1"))
	stray.Header.Set(hdrOrigin, "n9")
	stray.Data = cmaf.EncodeOp(mirror.Changes()+1, &cmaf.Op{Kind: cmaf.OpEnded})
	if err := onc.PublishMsg(stray); err != nil {
		t.Fatal(err)
	}
	src.Feed(t, 1)
	caughtUp(t, src.P, mirror)
	src.End(t)
	caughtUp(t, src.P, mirror)

	if _, err := relays.Packager(ctx, "s2"); !errors.Is(err, ErrNotHere) {
		t.Fatalf("a stream the origin does not have: %v", err)
	}
	if _, err := relays.Packager(ctx, "lost"); err == nil {
		t.Fatal("a stream without an origin was relayed")
	}
}

// A stream with an ABR ladder: the relay node's mirror lists the rungs the
// origin's does, each a mirror of the rung (found where its stream is: a
// rung is not in the directory), and none once the ladder stops.
func TestRelayLadder(t *testing.T) {
	onc, rnc := natsPair(t)
	src := cmaftest.New(t, cmaf.Config{Window: 4})
	src.Feed(t, 1)
	rung := cmaftest.New(t, cmaf.Config{Window: 4})
	rung.Feed(t, 1)
	src.P.SetVariants([]cmaf.Variant{{ID: "s1-480", P: rung.P}})
	lookup := map[string]*cmaf.Packager{"s1": src.P, "s1-480": rung.P}
	origin, err := ServeOrigin(onc, "n1", func(id string) (*cmaf.Packager, bool) { p, ok := lookup[id]; return p, ok },
		func(string) (*stream.Hub, bool) { return nil, false }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	relays := NewRelays(rnc, "n2", func(ctx context.Context, id string) (string, error) {
		if id != "s1" {
			return "", ErrNotHere
		}
		return "n1", nil
	}, quiet)
	defer relays.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mirror, err := relays.Packager(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	vs := mirror.Variants()
	if len(vs) != 1 || vs[0].ID != "s1-480" {
		t.Fatalf("the relay lists %+v, want the rung", vs)
	}
	rung.Feed(t, 1)
	caughtUp(t, rung.P, vs[0].P)
	if n := relays.Count(); n != 1 {
		t.Fatalf("the relay node counts %d streams, want 1 (a rung is its stream's)", n)
	}

	src.P.SetVariants(nil)
	if err := mirror.Wait(ctx, func(v *cmaf.View) bool { return len(v.Variants) == 0 }); err != nil {
		t.Fatal(err)
	}
	if vs := mirror.Variants(); len(vs) != 0 {
		t.Fatalf("the ladder stopped, the relay still lists %+v", vs)
	}
	rung.End(t)
	src.End(t)
	caughtUp(t, src.P, mirror)
}

// Two nodes ask for a stream's units: each gets its own feed, starting at
// the origin's cached keyframe with the tracks in front, then every unit
// the origin's hub takes, with its timestamps.
func TestRelayFrames(t *testing.T) {
	onc, rnc := natsPair(t)
	src := cmaftest.New(t, cmaf.Config{})
	src.Feed(t, 1)
	origin, err := ServeOrigin(onc, "n1", func(string) (*cmaf.Packager, bool) { return nil, false },
		func(id string) (*stream.Hub, bool) { return src.Hub, id == "s1" }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var readers []*stream.Reader
	for _, node := range []string{"n2", "n3"} {
		relays := NewRelays(rnc, node, func(context.Context, string) (string, error) { return "n1", nil }, quiet)
		defer relays.Close()
		hub, err := relays.Hub(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if !hub.Tracks().SameParams(src.Hub.Tracks()) {
			t.Fatalf("%s's hub has other tracks", node)
		}
		if k := hub.LastKeyframe(); k == nil || !k.Key {
			t.Fatalf("%s's hub has no keyframe when it is handed out", node)
		}
		readers = append(readers, hub.NewReader("test", 4096))
	}
	// The origin's next units reach both, as they were.
	want := src.Hub.NewReader("test", 4096)
	defer want.Close()
	src.Feed(t, 1)
	var last *stream.Unit
	for want.Len() > 0 {
		u, _ := want.Read(ctx)
		if u.Kind == stream.KindVideo {
			last = u
		}
	}
	for i, r := range readers {
		for {
			u, err := r.Read(ctx)
			if err != nil {
				t.Fatalf("n%d: the origin's last frame never came: %v", i+2, err)
			}
			if u.Kind == stream.KindVideo && u.DTS == last.DTS && u.PTS == last.PTS && len(u.NALUs) == len(last.NALUs) {
				break
			}
		}
		r.Close()
	}
}

// FuzzDecodeFrame: a frame message read from the network is refused or
// read; a unit read encodes back to the same bytes; nothing panics.
func FuzzDecodeFrame(f *testing.F) {
	src := cmaftest.New(f, cmaf.Config{})
	r := src.Hub.NewReader("fuzz", 4096)
	src.Feed(f, 1)
	f.Add(encodeTracks(src.Hub.Tracks()))
	for i := 0; r.Len() > 0 && i < 30; i++ {
		u, _ := r.Read(context.Background())
		f.Add(encodeUnit(u))
	}
	r.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == frameTracks {
			decodeTracks(b[1:])
			return
		}
		m, err := decodeUnit(b)
		if err != nil {
			return
		}
		if m.kind == frameAudio {
			again := encodeUnit(&stream.Unit{Kind: stream.KindAudio, Epoch: m.epoch, DTS: m.dts, PTS: m.dts, Payload: m.payload})
			if string(again) != string(b) {
				t.Fatal("an audio unit read back differently")
			}
		}
	})
}

// TestRelayPosition: a node taking a stream over asks where it stands:
// the relay node's mirror answers with the origin's position, exactly; a
// stream nobody relays gets no answer within PositionWait.
func TestRelayPosition(t *testing.T) {
	onc, rnc, src := originOfS1(t)
	relays := NewRelays(rnc, "n2", func(context.Context, string) (string, error) { return "n1", nil }, quiet)
	defer relays.Close()
	if err := relays.AnswerPositions(func(string) (*cmaf.Packager, bool) { return nil, false }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mirror, err := relays.Packager(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	caughtUp(t, src.P, mirror)

	// A third node (the origin's connection stands in for it) asks.
	asker := NewRelays(onc, "n3", func(context.Context, string) (string, error) { return "", ErrNotHere }, quiet)
	defer asker.Close()
	pos, ok := asker.Position(ctx, "s1", 1)
	var want cmaf.Position // as it travels: to the millisecond
	b, _ := json.Marshal(src.P.Position())
	json.Unmarshal(b, &want)
	if !ok || !reflect.DeepEqual(pos, want) {
		t.Fatalf("the relays say %+v (%v), the origin is at %+v", pos, ok, want)
	}
	if pos.Seq == 0 || pos.Part["video"] == 0 {
		t.Fatalf("a position of nothing: %+v", pos)
	}
	if _, ok := asker.Position(ctx, "s9", 1); ok {
		t.Fatal("a stream nobody relays has a position")
	}

	// Two more relaying nodes, one a part behind the first and one a part
	// ahead: the latest of the three is where the numbering stands.
	behind, ahead := want, want
	behind.Part = map[string]uint64{"video": want.Part["video"] - 1, "audio": want.Part["audio"]}
	ahead.Part = map[string]uint64{"video": want.Part["video"] + 1, "audio": want.Part["audio"] + 1}
	for _, p := range []cmaf.Position{behind, ahead} {
		b, _ := json.Marshal(p)
		sub, err := onc.Subscribe(positionSubject("s1"), func(m *nats.Msg) { m.Respond(b) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	onc.Flush()
	if pos, ok := asker.Position(ctx, "s1", 3); !ok || !reflect.DeepEqual(pos, ahead) {
		t.Fatalf("three relays say %+v (%v), want the latest %+v", pos, ok, ahead)
	}
}
