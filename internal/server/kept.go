package server

import (
	"context"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/store"
)

// keepStream saves a Streams API stream's state in the database.
func (s *Server) keepStream(k live.Kept) error {
	state := store.StreamIdle
	switch k.Status {
	case live.StatusLive:
		state = store.StreamLive
	case live.StatusEnded:
		state = store.StreamEnded
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.store.PutStream(ctx, store.Stream{ID: k.ID, Key: k.Key, Name: k.Name, Record: k.Record, Public: k.Public,
		State: state, CreatedAt: k.CreatedAt, EndedAt: k.EndedAt})
}

// restoreStreams brings back the Streams API streams and their outputs
// that the previous run kept, before the ingest opens.
func (s *Server) restoreStreams() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	retention := s.reg.Config().EndedRetention
	if err := s.store.ForgetEndedStreams(ctx, time.Now().Add(-retention)); err != nil {
		return err
	}
	rows, err := s.store.Streams(ctx)
	if err != nil {
		return err
	}
	kept := make([]live.Kept, 0, len(rows))
	for _, r := range rows {
		k := live.Kept{ID: r.ID, Key: r.Key, Name: r.Name, Record: r.Record, Public: r.Public, Status: live.StatusIdle,
			CreatedAt: r.CreatedAt, EndedAt: r.EndedAt}
		switch r.State {
		case store.StreamLive:
			k.Status = live.StatusLive
		case store.StreamEnded:
			k.Status = live.StatusEnded
		}
		kept = append(kept, k)
	}
	s.reg.Restore(kept)
	outputs := 0
	for _, k := range kept {
		st, err := s.reg.Get(k.ID)
		if err != nil || st.Status() == live.StatusEnded {
			continue
		}
		outs, err := s.store.Outputs(ctx, k.ID)
		if err != nil {
			return err
		}
		for _, o := range outs {
			if _, err := s.outputs.Add(st, restream.Request{ID: o.ID, URL: o.URL, Name: o.Name, Profile: o.Profile, Owner: o.Owner}); err != nil {
				s.log.Warn("output not restored", "stream", k.ID, "output", o.ID, "url", restream.Redact(o.URL), "err", err)
				continue
			}
			outputs++
		}
	}
	if len(kept) > 0 {
		s.log.Info("streams restored", "streams", len(kept), "outputs", outputs)
	}
	return nil
}
