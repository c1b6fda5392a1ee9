//go:build race

package mcsession

// raceEnabled reports whether the test binary was built with -race. The
// race detector allocates on its own, so testing.AllocsPerRun counts are
// meaningless under it.
const raceEnabled = true
