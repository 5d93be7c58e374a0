// Command managed is a managed-streaming app on glasscast's Go SDK, doing
// what the managed example of the RTMP streaming guide does: it asks for a
// managed stream, keeps the user informed on the glasses' display as the
// status changes, shares the URLs only once they play, and stops when the
// user says "stop stream".
//
//	PACKAGE_NAME=com.example.managedstreaming MENTRAOS_API_KEY=... PORT=3000 go run ./examples/managed
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/glasscast/glasscast/sdk"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := newApp(env("PACKAGE_NAME", "com.example.managedstreaming"), os.Getenv("MENTRAOS_API_KEY"), log)
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

func newApp(pkg, apiKey string, log *slog.Logger) *sdk.AppServer {
	srv := sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: apiKey, Logger: log})
	srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
		log := log.With("user", s.UserID)
		show := func(text string) { s.Layouts.ShowTextWall(text, 0) }

		// Listen before starting: statuses say when the URLs really play.
		unsubscribe := s.Camera.OnManagedStreamStatus(func(st sdk.ManagedStreamStatus) {
			switch st.Status {
			case sdk.StatusInitializing:
				show("Starting stream...")
			case sdk.StatusActive:
				log.Info("stream is live: share these URLs", "hls", st.HLSURL, "dash", st.DASHURL, "webrtc", st.WebRTCURL)
				show("Stream live!\n\n" + st.HLSURL)
			case sdk.StatusStopped:
				show("Stream stopped")
			case sdk.StatusError:
				show("Stream error\n\n" + st.Message)
			}
		})
		defer unsubscribe()

		res, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{EnableWebRTC: true})
		switch {
		case errors.Is(err, sdk.ErrCameraBusy):
			show("Camera busy\n\nAnother app holds the camera")
			return err
		case err != nil:
			show("Failed to start stream")
			return err
		}
		log.Info("stream requested; waiting for it to play before sharing", "hls", res.HLSURL)

		unsubscribeVoice := s.Events.OnTranscription(func(t sdk.Transcription) {
			if !t.IsFinal {
				return
			}
			cmd := strings.ToLower(strings.TrimSpace(t.Text))
			if strings.Contains(cmd, "stop stream") || strings.Contains(cmd, "end stream") {
				s.Camera.StopManagedStream(ctx)
			}
		})
		defer unsubscribeVoice()
		<-ctx.Done()
		return nil
	})
	return srv
}
