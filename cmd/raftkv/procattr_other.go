//go:build unix && !linux

package main

import "syscall"

// childProcAttr puts a replica in a process group of its own, so that the
// terminal's Ctrl-C reaches the launcher only.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
