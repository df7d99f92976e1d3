package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSpawnerOutlivesCallerThread: a replica started through the spawner
// keeps running when the OS thread of the goroutine that asked for it
// ends. Pdeathsig (childProcAttr) signals a child when the thread that
// started it ends, and the Go runtime ends a thread when a goroutine
// locked to it returns; a child started from such a thread would get
// SIGTERM then, with its launcher alive.
func TestSpawnerOutlivesCallerThread(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	sp := startSpawner()
	defer sp.stop()
	cmd := exec.Command(sleep, "60")
	cmd.SysProcAttr = childProcAttr()
	type started struct {
		tid int
		err error
	}
	ch := make(chan started, 1)
	var s started
	for s.tid == 0 {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			if syscall.Gettid() == syscall.Getpid() {
				// The main thread, which the runtime keeps: try
				// another goroutine.
				runtime.UnlockOSThread()
				ch <- started{}
				return
			}
			err := sp.start(cmd)
			ch <- started{syscall.Gettid(), err}
		}()
		s = <-ch
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	// The caller's thread ends; once it is gone from /proc, the kernel
	// has sent the Pdeathsig of the children it started, if any.
	task := fmt.Sprintf("/proc/self/task/%d", s.tid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the thread %d of the goroutine that started the child did not end", s.tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	state, pending := procState(t, cmd.Process.Pid)
	if state == "Z" || state == "X" || pending&(1<<(syscall.SIGTERM-1)) != 0 {
		t.Errorf("the child (pid %d) was signalled when the thread that asked for it ended: state %s, pending signals %#x", cmd.Process.Pid, state, pending)
	}
}

// procState returns process pid's state letter and the signals pending
// for it (its own and its thread group's).
func procState(t *testing.T, pid int) (state string, pending uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			state, _, _ = strings.Cut(v, " ")
		case "SigPnd", "ShdPnd":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status: %s %q: %v", pid, k, v, err)
			}
			pending |= n
		}
	}
	return state, pending
}
