package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
)

// The local launcher listens on each replica's ports itself, then hands
// the listeners to the replica's process (exec.Cmd.ExtraFiles), naming
// their file descriptors in these environment variables: no port is
// closed and opened again between the launcher's check that it is free
// and the replica's use, and port 0 gives each replica a free port.
const (
	envHTTPFD = "RAFTKV_HTTP_FD"
	envRaftFD = "RAFTKV_RAFT_FD"
)

// canHandOver tells whether a process can inherit listeners here (not on
// Windows: the launcher's replicas listen themselves there).
const canHandOver = runtime.GOOS != "windows"

// handOver arranges for cmd's process to inherit the HTTP and Raft
// listeners. The files it returns are the launcher's copies, to close
// once the process started.
func handOver(cmd *exec.Cmd, httpLn, raftLn net.Listener) ([]*os.File, error) {
	var files []*os.File
	for _, l := range []struct {
		env string
		ln  net.Listener
	}{{envHTTPFD, httpLn}, {envRaftFD, raftLn}} {
		f, err := l.ln.(*net.TCPListener).File()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("hand over the listener on %s: %w", l.ln.Addr(), err)
		}
		cmd.Env = append(cmd.Env, l.env+"="+strconv.Itoa(3+len(cmd.ExtraFiles))) // after stdin, stdout, stderr
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		files = append(files, f)
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// inheritedListeners returns the listeners the launcher handed this
// replica, or nils if it was started otherwise.
func inheritedListeners() (httpLn, raftLn net.Listener, err error) {
	if httpLn, err = inheritedListener(envHTTPFD, "HTTP"); err != nil {
		return nil, nil, err
	}
	if raftLn, err = inheritedListener(envRaftFD, "Raft"); err != nil {
		closeListener(httpLn)
		return nil, nil, err
	}
	return httpLn, raftLn, nil
}

func inheritedListener(env, what string) (net.Listener, error) {
	s := os.Getenv(env)
	if s == "" {
		return nil, nil
	}
	os.Unsetenv(env)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: want the file descriptor of the %s listener the launcher handed over, a number from 3", env, s, what)
	}
	f := os.NewFile(uintptr(fd), what+" listener")
	defer f.Close() // FileListener keeps a copy
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s=%d: the %s listener the launcher handed over: %w", env, fd, what, err)
	}
	return ln, nil
}
