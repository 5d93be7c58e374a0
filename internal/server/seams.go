package server

import (
	"errors"

	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/protocol"
)

// planeOutputs is the control plane's Outputs over the restream manager.
type planeOutputs struct{ m *restream.Manager }

var _ control.Outputs = planeOutputs{}

func (o planeOutputs) Check(url, name string) error {
	return restream.CheckRequest(restream.Request{URL: url, Name: name})
}

func (o planeOutputs) MaxPerStream() int { return restream.MaxPerStream }

func (o planeOutputs) Add(st *live.Stream, url, name, owner string) error {
	_, err := o.m.Add(st, restream.Request{URL: url, Name: name, Owner: owner})
	if errors.Is(err, restream.ErrDuplicate) {
		return nil
	}
	return err
}

func (o planeOutputs) Statuses(streamID, pkg string) []protocol.OutputStatus {
	var out []protocol.OutputStatus
	for _, in := range o.m.List(streamID) {
		url := in.URL
		if in.Owner != pkg {
			url = restream.Redact(url)
		}
		out = append(out, protocol.OutputStatus{ID: in.ID, URL: url, Name: in.Name, Status: in.Status, Error: in.Error,
			AddedBy: in.Owner, Bytes: in.Bytes, Bitrate: in.Bitrate, Mode: in.Mode})
	}
	return out
}

// checkRTMPURL is the control plane's check of an unmanaged stream's URL.
func checkRTMPURL(raw string) error {
	_, err := rtmp.ParseURL(raw)
	return err
}
