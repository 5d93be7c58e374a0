// Package bench is glasscast's load and latency tool, run as
// `glasscast bench`: it starts a server in-process, drives it with many
// publishers of the Go test source and many LL-HLS and DASH readers, and
// reports latency, time to first part, CPU and memory.
package bench

import (
	"fmt"
	"io"
)

// Main runs the bench command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "glasscast bench: not built yet")
	return 2
}
