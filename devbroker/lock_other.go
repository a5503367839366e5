//go:build !unix

package devbroker

// lockDir is a no-op where flock is unavailable.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
