package raft

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// TestLabSuiteOnDisk runs the 4B tests again in a child process, with every
// server keeping its state in a storage.WAL in a temporary directory instead
// of a Persister; a crash closes the log and a restart reopens it.
func TestLabSuiteOnDisk(t *testing.T) {
	if os.Getenv("RAFT_TEST_STORAGE") != "" {
		t.Skip("this is the run on disk")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "4B$", "-test.v")
	cmd.Env = append(os.Environ(), "RAFT_TEST_STORAGE=disk")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("4B tests on disk: %v\n%s", err, out)
	}
	passed := regexp.MustCompile(`(?m)^--- PASS: \S+4B `).FindAll(out, -1)
	if len(passed) < 16 {
		t.Fatalf("4B tests on disk: %d passed, want 16\n%s", len(passed), out)
	}
	t.Logf("%d 4B tests passed on disk", len(passed))
}
