//go:build unix

package ffmpeg

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ending the context kills the helper and what it started (its process
// group), and Wait returns though a grandchild held its stdout.
func TestCommandKillsItsGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd, stderr := Command(ctx, "sh", "-c", `echo started >&2; sleep 300 & echo $!; wait`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the context ended")
	}
	// The grandchild is gone (reaped by init once killed): signal 0 finds
	// no such process.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(grandchild, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the helper's child %d outlived it", grandchild)
		}
		time.Sleep(20 * time.Millisecond) // init reaps it on its own time
	}
	if !strings.Contains(stderr.String(), "started") {
		t.Fatalf("stderr kept: %q", stderr.String())
	}
}

func TestErr(t *testing.T) {
	tail := &Tail{}
	if Err("ffmpeg", tail, nil) != nil {
		t.Fatal("an error from nothing")
	}
	tail.Write([]byte("first line\nInvalid data found when processing input\n"))
	if err := Err("ffmpeg", tail, nil); err == nil || err.Error() != "ffmpeg: Invalid data found when processing input" {
		t.Fatalf("Err: %v", err)
	}
	if err := Err("ffmpeg", &Tail{}, context.Canceled); err == nil || err.Error() != "ffmpeg: context canceled" {
		t.Fatalf("Err without stderr: %v", err)
	}
}
