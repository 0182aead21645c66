//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package natsbin

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on path, blocking; the returned
// func releases it. The lock dies with the process.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
