package main

import "syscall"

// childProcAttr puts a replica in a process group of its own, so that the
// terminal's Ctrl-C reaches the launcher only, and has the kernel send it
// SIGTERM should the launcher die without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
