//go:build race

package httpcache

// raceEnabled reports that the race detector is on, to size heavy tests.
const raceEnabled = true
