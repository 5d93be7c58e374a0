package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/glasscast/glasscast/internal/testenv"
	"github.com/glasscast/glasscast/sdk"
)

// exampleEnv runs glasscast with one app declared and simulated glasses
// connected for the user, and starts the app for them once its server runs.
func exampleEnv(pkg string, run func(srv *sdk.AppServer) func()) {
	env, err := testenv.Start(nil, pkg)
	if err != nil {
		fmt.Println("glasscast:", err)
		return
	}
	defer env.Close()
	if _, _, err := env.Glasses("ada@example.com", nil); err != nil {
		fmt.Println(err)
		return
	}
	app := env.Apps[pkg]
	srv := sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: app.APIKey})
	wait := run(srv)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, app.Listener) }()
	if err := env.StartApp("ada@example.com", pkg); err != nil {
		fmt.Println("start:", err)
	}
	wait()
	cancel()
	<-served
}

// A managed stream: the URLs come back at once, and play once active.
func ExampleCamera_StartManagedStream() {
	exampleEnv("com.example.managed", func(srv *sdk.AppServer) func() {
		done := make(chan struct{})
		srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
			defer close(done)
			res, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{Quality: "720p"})
			if err != nil {
				return err
			}
			fmt.Println("URLs at once, playing:", res.Active)
			active, err := s.Camera.WaitManagedActive(ctx)
			if err != nil {
				return err
			}
			fmt.Println("then active:", active.Active, "same HLS URL:", active.HLSURL == res.HLSURL)
			return s.Camera.StopManagedStream(ctx)
		})
		return func() { <-done }
	})
	// Output:
	// URLs at once, playing: false
	// then active: true same HLS URL: true
}

// Errors are values: a bad RTMP URL, then a camera another stream holds.
func ExampleCamera_StartStream() {
	exampleEnv("com.example.unmanaged", func(srv *sdk.AppServer) func() {
		done := make(chan struct{})
		srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
			defer close(done)
			err := s.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: "http://example.com/live/key"})
			fmt.Println("invalid URL:", errors.Is(err, sdk.ErrInvalidURL))

			if _, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
				return err
			}
			err = s.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: "rtmp://127.0.0.1/live/key"})
			fmt.Println("camera busy:", errors.Is(err, sdk.ErrCameraBusy))
			return s.Camera.StopManagedStream(ctx)
		})
		return func() { <-done }
	})
	// Output:
	// invalid URL: true
	// camera busy: true
}
