package restream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/glasscast/glasscast/internal/flv"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/stream"
)

// errStreamEnded ends an output whose stream ended.
var errStreamEnded = flv.ErrStreamEnded

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

// destination is one connection to an output's RTMP server, made by
// glasscast itself for both paths: the address checked, the certificate
// verified, the key kept in this process.
type destination struct {
	o      *Output
	c      *gortmplib.Client
	w      *gortmplib.Writer
	vt, at *gortmplib.Track
	sent   uint64
	stop   func() bool
}

// connect dials the output's URL and starts publishing tracks.
func (o *Output) connect(ctx context.Context, tracks *stream.Tracks) (*destination, error) {
	u, err := rtmp.ClientURL(o.url)
	if err != nil {
		return nil, errPermanent{err}
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := &gortmplib.Client{URL: u, Publish: true, TLSConfig: o.m.cfg.TLS, DialContext: o.m.dialer(o.owner != "admin")}
	if err := c.Initialize(dialCtx); err != nil {
		return nil, connectError{fmt.Errorf("connect: %w", err)}
	}
	d := &destination{o: o, c: c}
	// A removal cuts a write that waits on the network.
	d.stop = context.AfterFunc(ctx, func() { c.NetConn().Close() })
	var list []*gortmplib.Track
	if v := tracks.Video; v != nil {
		d.vt = &gortmplib.Track{Codec: &codecs.H264{SPS: v.SPS, PPS: v.PPS}}
		list = append(list, d.vt)
	}
	if a := tracks.Audio; a != nil {
		conf := a.Config
		d.at = &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &conf}}
		list = append(list, d.at)
	}
	c.NetConn().SetWriteDeadline(time.Now().Add(o.m.cfg.WriteTimeout))
	d.w = &gortmplib.Writer{Conn: c, Tracks: list}
	if err := d.w.Initialize(); err != nil {
		d.close()
		return nil, connectError{fmt.Errorf("publish: %w", err)}
	}
	d.sent = c.BytesSent()
	o.setStatus(StatusActive, "")
	return d, nil
}

// write sends one unit with timestamps shifted back by base.
func (d *destination) write(unit *stream.Unit, base time.Duration) error {
	d.c.NetConn().SetWriteDeadline(time.Now().Add(d.o.m.cfg.WriteTimeout))
	var err error
	switch {
	case unit.Kind == stream.KindVideo && d.vt != nil:
		err = d.w.WriteH264(d.vt, unit.PTS-base, unit.DTS-base, unit.NALUs)
	case unit.Kind == stream.KindAudio && d.at != nil:
		err = d.w.WriteMPEG4Audio(d.at, unit.DTS-base, unit.Payload)
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	now := d.c.BytesSent()
	d.o.addBytes(now-d.sent, time.Now())
	d.sent = now
	return nil
}

func (d *destination) close() {
	d.stop()
	d.c.Close()
}

// pass pushes the stream as it is.
func (o *Output) pass(ctx context.Context) error {
	r := o.hub.NewReader("output "+o.id, o.m.cfg.Queue)
	defer r.Close()
	first, err := firstUnit(ctx, r)
	if err != nil {
		return err
	}
	tracks := first.Tracks
	d, err := o.connect(ctx, tracks)
	if err != nil {
		return err
	}
	defer d.close()
	base := first.DTS
	for unit := first; ; {
		if unit.Kind != stream.KindEnd && unit.DTS >= base {
			if unit.Tracks != tracks && !unit.Tracks.SameParams(tracks) {
				return flv.ErrTracksChanged
			}
			if err := d.write(unit, base); err != nil {
				return err
			}
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
