//go:build glasscast_nextformat

package cluster

// This build stands for the next one in tests of a rolling upgrade: it
// writes format 2, with a field the current build does not know.
func init() {
	writeFormat = entryFormat + 1
	nextField = "nextBuild"
}
