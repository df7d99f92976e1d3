package main

import (
	"os/exec"
	"runtime"
)

// spawner starts the local cluster's replicas from one goroutine locked to
// its OS thread for as long as the launcher runs. On Linux a replica gets
// SIGTERM when the launcher dies (Pdeathsig, see childProcAttr); but the
// kernel ties that to the thread that started the replica, not to the
// process, and the Go runtime ends a thread when a goroutine locked to it
// returns: a replica started from any thread could be killed long before
// the launcher dies. No other goroutine runs on the spawner's thread, so
// it lives as long as the spawner does.
type spawner struct {
	reqs chan func()
}

func startSpawner() *spawner {
	s := &spawner{reqs: make(chan func())}
	go func() {
		runtime.LockOSThread()
		// Unlocked at the end, so that the thread lives on (a locked
		// goroutine's return would end it, signalling any replica still
		// running).
		defer runtime.UnlockOSThread()
		for f := range s.reqs {
			f()
		}
	}()
	return s
}

// start starts cmd from the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// stop ends the spawner.
func (s *spawner) stop() { close(s.reqs) }
