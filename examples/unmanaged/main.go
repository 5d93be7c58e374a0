// Command unmanaged is an unmanaged-streaming app on glasscast's Go SDK,
// doing what the unmanaged example of the RTMP streaming guide does: it
// streams to its own RTMP server (RTMP_URL), holding the camera alone,
// shows the status on the glasses, watches the dropped-frame rate, and
// answers "stop stream" and "stream status".
//
//	PACKAGE_NAME=com.example.unmanagedstreaming MENTRAOS_API_KEY=... RTMP_URL=rtmp://host/live/key go run ./examples/unmanaged
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/sdk"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := newApp(env("PACKAGE_NAME", "com.example.unmanagedstreaming"), os.Getenv("MENTRAOS_API_KEY"), os.Getenv("RTMP_URL"), 10*time.Second, log)
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

// dropRate is the share of frames dropped so far, in percent.
func dropRate(st *sdk.StreamStats) float64 {
	if st == nil || st.FPS <= 0 || st.Duration <= 0 {
		return 0
	}
	return float64(st.DroppedFrames) / (st.FPS * st.Duration) * 100
}

func newApp(pkg, apiKey, rtmpURL string, healthEvery time.Duration, log *slog.Logger) *sdk.AppServer {
	srv := sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: apiKey, Logger: log})
	srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
		show := func(text string) { s.Layouts.ShowTextWall(text, 0) }
		unsubscribe := s.Camera.OnStreamStatus(func(st sdk.RTMPStreamStatus) {
			switch st.Status {
			case sdk.StatusInitializing:
				show("Connecting to the RTMP server...")
			case sdk.StatusActive:
				show("Stream is live!")
			case sdk.StatusReconnecting:
				show("Reconnecting...")
			case sdk.StatusStopped:
				show("Stream stopped")
			case sdk.StatusError, sdk.StatusTimeout:
				show("Stream error\n\n" + st.ErrorDetails)
			}
		})
		defer unsubscribe()

		err := s.Camera.StartStream(ctx, sdk.RTMPStreamOptions{
			RTMPURL: rtmpURL,
			Video:   &sdk.VideoConfig{Width: 1280, Height: 720, Bitrate: 2_500_000, FrameRate: 30},
			Audio:   &sdk.AudioConfig{Bitrate: 128_000, SampleRate: 44_100},
			Stream:  &sdk.StreamConfig{DurationLimit: 1800},
		})
		switch {
		case errors.Is(err, sdk.ErrInvalidURL):
			show("Invalid RTMP URL\n\n" + rtmpURL)
			return err
		case errors.Is(err, sdk.ErrCameraBusy) && strings.Contains(err.Error(), "managed stream active"):
			show("Managed stream active\n\nStop it first")
			return err
		case errors.Is(err, sdk.ErrCameraBusy), errors.Is(err, sdk.ErrAlreadyStreaming):
			show("Camera is busy\n\nAnother stream is active")
			return err
		case err != nil:
			show("Failed to start the stream")
			return err
		}

		unsubscribeVoice := s.Events.OnTranscription(func(t sdk.Transcription) {
			if !t.IsFinal {
				return
			}
			cmd := strings.ToLower(strings.TrimSpace(t.Text))
			switch {
			case strings.Contains(cmd, "stop stream") || strings.Contains(cmd, "end stream"):
				s.Camera.StopStream(ctx)
				show("Stopping stream...")
			case strings.Contains(cmd, "stream status"):
				if st := s.Camera.StreamStatus(); st != nil {
					show("Stream status: " + st.Status.String())
				} else {
					show("No active stream")
				}
			}
		})
		defer unsubscribeVoice()

		// Health check: warn on more than 5 % dropped frames.
		tick := time.NewTicker(healthEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				if !s.Camera.IsCurrentlyStreaming() {
					continue
				}
				if st := s.Camera.StreamStatus(); st != nil {
					if rate := dropRate(st.Stats); rate > 5 {
						show(fmt.Sprintf("Poor connection\n\nDropped frames: %.1f%%", rate))
					}
				}
			}
		}
	})
	return srv
}
