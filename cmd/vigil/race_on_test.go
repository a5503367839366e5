//go:build race

package main

// raceEnabled: the race detector slows the detector down about thirty-fold,
// so the largest runs use less traffic under it (make test runs them at
// full size without it).
const raceEnabled = true
