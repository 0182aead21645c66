package bench

import "syscall"

// sysProcAttr makes the kernel kill a started process if the bench dies
// without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
