// Command first is the smallest glasscast app: when a user starts it, it
// asks their glasses for a managed stream and prints where to watch it once
// it plays (README, "Your first app").
//
//	PACKAGE_NAME=com.example.first MENTRAOS_API_KEY=... go run ./examples/first
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/glasscast/glasscast/sdk"
)

func main() {
	app := sdk.NewAppServer(sdk.Config{PackageName: os.Getenv("PACKAGE_NAME"), APIKey: os.Getenv("MENTRAOS_API_KEY")})
	app.OnSession(func(ctx context.Context, s *sdk.Session) error {
		if _, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
			return err
		}
		live, err := s.Camera.WaitManagedActive(ctx) // the URLs play now
		if err != nil {
			return err
		}
		fmt.Println("watch it:", live.PreviewURL, "\nLL-HLS:", live.HLSURL)
		<-ctx.Done() // the stream lasts as long as the session
		return nil
	})
	if err := app.ListenAndServe(context.Background(), ":3000"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
