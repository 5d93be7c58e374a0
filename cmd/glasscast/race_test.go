//go:build race

package main

// raceEnabled: the tests build the binaries they run with the race
// detector too (the packages are compiled that way already).
const raceEnabled = true
