package ffmpeg

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
)

// waitDelay is how long after a helper exits, or is killed, its pipes may
// stay open (a grandchild holding them) before Wait closes them.
const waitDelay = 2 * time.Second

// Command makes a helper process (ffmpeg) the one way every part of
// glasscast runs one: in a process group of its own, which is killed
// whole when ctx ends (an encoder's own children with it); its pipes
// closed waitDelay after it exits or is killed, so that nothing reading
// them waits on a stuck process; the end of its stderr kept in the Tail
// returned, for Err.
func Command(ctx context.Context, bin string, args ...string) (*exec.Cmd, *Tail) {
	cmd := exec.CommandContext(ctx, bin, args...)
	ownGroup(cmd)
	cmd.WaitDelay = waitDelay
	t := &Tail{}
	cmd.Stderr = t
	return cmd, t
}

// Err is a helper's failure as one line: the last line it wrote to
// stderr, or how it ended; nil if it wrote nothing and waitErr is nil.
func Err(name string, stderr *Tail, waitErr error) error {
	msg := strings.TrimSpace(stderr.String())
	switch {
	case msg != "":
		return errors.New(name + ": " + LastLine(msg))
	case waitErr != nil:
		return errors.New(name + ": " + waitErr.Error())
	}
	return nil
}
