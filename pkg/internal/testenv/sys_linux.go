package testenv

import "syscall"

// sysProcAttr makes the kernel kill children if the test binary dies without
// running its cleanups (timeout, panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
