//go:build race

package expression

// raceEnabled: under the race detector sync.Pool drops items on purpose, so
// whatever draws from a pool (regexp matching) allocates now and then.
const raceEnabled = true
