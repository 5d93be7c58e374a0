package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/server"
)

// childEnv, set to a configuration in JSON, makes the test binary run one
// glasscast node instead of the tests: a node a test can kill with SIGKILL.
const childEnv = "GLASSCAST_TEST_CHILD_NODE"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	if cfg := os.Getenv(childAppEnv); cfg != "" {
		os.Exit(runChildApp(cfg))
	}
	// Parallel tests' goroutines are checked here, once all have ended;
	// the others' at their own end too (checkLeaks).
	goleak.VerifyTestMain(m)
}

// runChild runs a node until it is killed; it prints its base URL once it
// serves.
func runChild(cfgJSON string) int {
	cfg := config.Default()
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("serving", "http://"+srv.HTTPAddr().String()) // its own address, whatever its public URL
	if err := srv.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childNode is a glasscast node in a process of its own.
type childNode struct {
	harness
	cmd  *exec.Cmd
	log  *logTail
	done chan struct{}
}

// startChild runs a node in a child process with the harness's defaults
// and tweak, and waits until it serves.
func startChild(t *testing.T, tweak func(*config.Config)) *childNode {
	t.Helper()
	slow(t)
	b, err := json.Marshal(testConfig(t, tweak))
	if err != nil {
		t.Fatal(err)
	}
	c := &childNode{log: &logTail{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	c.cmd.Stderr = c.log
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if base, ok := strings.CutPrefix(sc.Text(), "serving "); ok {
				serving <- base
			}
		}
		io.Copy(io.Discard, out)
		c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("the child node's log (last %d KiB):\n%s", logTailMax>>10, c.log.String())
		}
	})
	select {
	case base := <-serving:
		c.harness = harness{t: t, base: base, log: c.log}
		c.waitHealthy()
	case <-c.done:
		t.Fatalf("the child node exited:\n%s", c.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the child node did not serve in 30 s:\n%s", c.log.String())
	}
	return c
}

// kill ends the node at once, as a crash or an OOM kill would.
func (c *childNode) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}
