//go:build !unix

package main

import "errors"

// contextSwitches is only answered on Unix systems (getrusage).
func contextSwitches() (voluntary, involuntary int64, err error) {
	return 0, 0, errors.New("context switches are only read on Unix systems")
}
