//go:build !linux

package childproc

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAttrNilOutsideLinux(t *testing.T) {
	assert.Nil(t, Attr(), "Attr() = %+v, want nil: only Linux has a parent-death signal", Attr())
}
