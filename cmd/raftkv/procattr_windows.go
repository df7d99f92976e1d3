package main

import "syscall"

// childProcAttr: nothing special on Windows.
func childProcAttr() *syscall.SysProcAttr { return nil }
