// Package kvcheck checks histories of operations on the key/value store
// (package kv) for linearizability with porcupine: it holds the store's
// sequential specification, a recorder for histories of concurrent clients,
// and a test helper that runs the check and writes porcupine's
// visualization when it fails. It is for tests only.
package kvcheck
