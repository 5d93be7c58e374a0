// Command restream is a managed-streaming app on glasscast's Go SDK that
// sends what the wearer sees to social platforms as well: it names the
// platforms' RTMP ingests (RESTREAM_URLS, comma-separated, e.g. YouTube's
// rtmp://a.rtmp.youtube.com/live2/KEY) as restream destinations, shows each
// output's status on the glasses, and takes them off the air when the user
// says "stop restream" while the stream itself goes on.
//
//	PACKAGE_NAME=com.example.restream MENTRAOS_API_KEY=... RESTREAM_URLS=rtmp://... go run ./examples/restream
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/glasscast/glasscast/sdk"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var dests []sdk.RestreamDestination
	for i, u := range strings.Split(os.Getenv("RESTREAM_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			dests = append(dests, sdk.RestreamDestination{URL: u, Name: fmt.Sprintf("destination %d", i+1)})
		}
	}
	srv := newApp(env("PACKAGE_NAME", "com.example.restream"), os.Getenv("MENTRAOS_API_KEY"), dests, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.ListenAndServe(ctx, ":"+env("PORT", "3000")); err != nil {
		log.Error("app server", "err", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// outputsText is what the display says about the outputs.
func outputsText(outs []sdk.OutputStatus) string {
	if len(outs) == 0 {
		return "Not restreaming"
	}
	var b strings.Builder
	for _, o := range outs {
		fmt.Fprintf(&b, "%s: %s\n", o.Name, o.Status)
	}
	return strings.TrimSpace(b.String())
}

func newApp(pkg, apiKey string, dests []sdk.RestreamDestination, log *slog.Logger) *sdk.AppServer {
	srv := sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: apiKey, Logger: log})
	srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
		show := func(text string) { s.Layouts.ShowTextWall(text, 0) }
		unsubscribe := s.Camera.OnManagedStreamStatus(func(st sdk.ManagedStreamStatus) {
			if st.Status == sdk.StatusActive {
				show(outputsText(st.Outputs))
			}
		})
		defer unsubscribe()
		res, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{RestreamDestinations: dests})
		if err != nil {
			show("Failed to start stream")
			return err
		}
		unsubscribeVoice := s.Events.OnTranscription(func(t sdk.Transcription) {
			if !t.IsFinal || !strings.Contains(strings.ToLower(t.Text), "stop restream") {
				return
			}
			outs, err := s.Camera.Outputs(ctx, res.StreamID)
			if err != nil {
				log.Warn("outputs", "err", err)
				return
			}
			for _, o := range outs {
				if o.AddedBy == pkg {
					if err := s.Camera.RemoveOutput(ctx, res.StreamID, o.ID); err != nil {
						log.Warn("remove output", "output", o.ID, "err", err)
					}
				}
			}
		})
		defer unsubscribeVoice()
		<-ctx.Done()
		return nil
	})
	return srv
}
