//go:build !linux

package main

import (
	"errors"
	"time"
)

func processCPU(pid int) (time.Duration, error) {
	return 0, errors.New("process CPU time is only read on Linux")
}

func machineCPU() (time.Duration, error) {
	return 0, errors.New("machine CPU time is only read on Linux")
}
