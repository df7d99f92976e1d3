package lab

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// onDiskTests are the 4B tests that crash and restart servers, so read
// back what they saved. The others only add writes to a log that nothing
// reads, and run in memory only.
var onDiskTests = []string{
	"TestPersist14B", "TestPersist24B", "TestPersist34B",
	"TestFigure84B", "TestFigure8Unreliable4B",
	"TestReliableChurn4B", "TestUnreliableChurn4B",
}

// TestLabSuiteOnDisk runs the 4B tests that restart servers again, each in
// a child process of its own and all at once (they mostly wait on timers),
// with every server keeping its state in a storage.WAL in a temporary
// directory instead of a Persister; a crash closes the log and a restart
// reopens it.
func TestLabSuiteOnDisk(t *testing.T) {
	if os.Getenv("RAFT_TEST_STORAGE") != "" {
		t.Skip("this is the run on disk")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
		err error // of Start
	}
	children := make([]*child, len(onDiskTests))
	t0 := time.Now()
	for i, name := range onDiskTests {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.v")}
		c.cmd.Env = append(os.Environ(), "RAFT_TEST_STORAGE=disk")
		c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
		c.err = c.cmd.Start()
		children[i] = c
	}
	for i, name := range onDiskTests {
		c := children[i]
		t.Run(name, func(t *testing.T) {
			if c.err != nil {
				t.Fatalf("start %s on disk: %v", name, c.err)
			}
			err := c.cmd.Wait()
			if err != nil {
				t.Fatalf("%s on disk: %v\n%s", name, err, c.out.Bytes())
			}
			if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(c.out.Bytes()) {
				t.Fatalf("%s on disk did not run\n%s", name, c.out.Bytes())
			}
			t.Logf("%s passed on disk, %v after the start of all", name, time.Since(t0).Round(time.Millisecond))
		})
	}
}
