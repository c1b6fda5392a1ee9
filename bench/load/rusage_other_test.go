//go:build !unix

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestContextSwitchesNeedUnix(t *testing.T) {
	_, _, err := contextSwitches()
	if assert.Error(t, err, "contextSwitches() = nil error, want one: only Unix has getrusage") {
		assert.Contains(t, err.Error(), "Unix", "contextSwitches() error %q, want it to name what is needed", err)
	}
}
