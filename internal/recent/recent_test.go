package recent

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSetForgetsAfterTTL(t *testing.T) {
	s := New(4, time.Second)
	t0 := time.Unix(1000, 0)
	s.Add("a", t0)
	assert.True(t, s.Has("a", t0), "Has(a) right after Add")
	assert.True(t, s.Has("a", t0.Add(999*time.Millisecond)), "Has(a) just before ttl")
	assert.False(t, s.Has("a", t0.Add(time.Second)), "Has(a) at ttl: forgotten")
	assert.False(t, s.Has("b", t0), "Has(b), never added")
	s.Add("a", t0.Add(2*time.Second))
	assert.True(t, s.Has("a", t0.Add(2500*time.Millisecond)), "Has(a) after it was added again")
}

func TestSetIsBoundedOldestForgottenFirst(t *testing.T) {
	s := New(3, time.Hour)
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		s.Add(fmt.Sprint(i), t0)
	}
	assert.Equal(t, 3, s.Len(), "Len after 10 Adds to a Set of 3")
	for i := range 7 {
		assert.False(t, s.Has(fmt.Sprint(i), t0), "Has(%d): among the oldest, forgotten", i)
	}
	for i := 7; i < 10; i++ {
		assert.True(t, s.Has(fmt.Sprint(i), t0), "Has(%d): among the 3 newest", i)
	}
	s.Add("9", t0) // again: no second slot
	assert.True(t, s.Has("7", t0), "adding a key already held forgets nothing")
}
