//go:build !unix

package ffmpeg

import "os/exec"

// ownGroup leaves cmd as it is: killing it on cancel is exec's default.
func ownGroup(*exec.Cmd) {}
