// Command mutate tests the tests: it plants known bugs in the protocol
// core, one at a time, in a copy of the module, and checks that the
// deterministic simulation (core.TestSimulation) catches each one on its
// own, within the seeds CI runs. It prints, per bug, the seed that caught
// it and how long that took.
//
//	go run ./internal/mutate                 # every bug, 20,000 seeds each at most
//	go run ./internal/mutate -only quorum    # the bugs whose name contains "quorum"
//	go run ./internal/mutate -list           # the bugs, with their patches
//
// A bug whose patch no longer applies (the code it edits changed) is an
// error: update its text here.
package main
