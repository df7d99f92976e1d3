// Command raftkv runs the replicated key/value store of package kv over
// real networking and storage, and talks to it.
//
//	raftkv [local]         start a local cluster of 3 replicas, as processes
//	raftkv serve ...       run one replica
//	raftkv put|get|append|del|status ...   client commands
//	raftkv bench ...       a load generator against a running cluster
//
// Run "raftkv -h" for the details.
package main
