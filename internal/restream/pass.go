package restream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/stream"
)

// errStreamEnded ends an output whose stream ended.
var errStreamEnded = errors.New("the stream ended")

// firstUnit reads up to the first media unit.
func firstUnit(ctx context.Context, r *stream.Reader) (*stream.Unit, error) {
	for {
		u, err := r.Read(ctx)
		if err != nil {
			if errors.Is(err, stream.ErrClosed) {
				return nil, errStreamEnded
			}
			return nil, err
		}
		if u.Kind != stream.KindEnd && u.Tracks != nil {
			return u, nil
		}
	}
}

// sameParams reports whether two track sets need no new sequence headers.
func sameParams(a, b *stream.Tracks) bool {
	if a == b {
		return true
	}
	if !a.SameShape(b) {
		return false
	}
	if a.Video != nil && (!bytes.Equal(a.Video.SPS, b.Video.SPS) || !bytes.Equal(a.Video.PPS, b.Video.PPS)) {
		return false
	}
	if a.Audio != nil && a.Audio.Config != b.Audio.Config {
		return false
	}
	return true
}

// pass pushes the stream as it is, with gortmplib's client.
func (o *Output) pass(ctx context.Context) error {
	r := o.hub.NewReader("output "+o.id, o.m.cfg.Queue)
	defer r.Close()
	first, err := firstUnit(ctx, r)
	if err != nil {
		return err
	}
	tracks := first.Tracks
	u, err := rtmp.ClientURL(o.url)
	if err != nil {
		return errPermanent{err}
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := &gortmplib.Client{URL: u, Publish: true, TLSConfig: o.m.cfg.TLS}
	if err := c.Initialize(dialCtx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	// A removal cuts a write that waits on the network.
	stopAfter := context.AfterFunc(ctx, func() { c.NetConn().Close() })
	defer stopAfter()

	var vt, at *gortmplib.Track
	var list []*gortmplib.Track
	if v := tracks.Video; v != nil {
		vt = &gortmplib.Track{Codec: &codecs.H264{SPS: v.SPS, PPS: v.PPS}}
		list = append(list, vt)
	}
	if a := tracks.Audio; a != nil {
		conf := a.Config
		at = &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &conf}}
		list = append(list, at)
	}
	c.NetConn().SetWriteDeadline(time.Now().Add(o.m.cfg.WriteTimeout))
	w := &gortmplib.Writer{Conn: c, Tracks: list}
	if err := w.Initialize(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	o.setStatus(StatusActive, "")
	base := first.DTS
	sent := c.BytesSent()
	for unit := first; ; {
		if unit.Kind != stream.KindEnd && unit.DTS >= base {
			if unit.Tracks != tracks && !sameParams(unit.Tracks, tracks) {
				return ErrTracksChanged
			}
			c.NetConn().SetWriteDeadline(time.Now().Add(o.m.cfg.WriteTimeout))
			var err error
			switch {
			case unit.Kind == stream.KindVideo && vt != nil:
				err = w.WriteH264(vt, unit.PTS-base, unit.DTS-base, unit.NALUs)
			case unit.Kind == stream.KindAudio && at != nil:
				err = w.WriteMPEG4Audio(at, unit.DTS-base, unit.Payload)
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			now := c.BytesSent()
			o.addBytes(now-sent, time.Now())
			sent = now
		}
		var err error
		unit, err = r.Read(ctx)
		if err != nil {
			if errors.Is(err, stream.ErrClosed) {
				return errStreamEnded
			}
			return err
		}
	}
}
