module github.com/raftkit/raft

go 1.26.0

require github.com/anishathalye/porcupine v1.3.1

require github.com/prometheus/client_golang v1.25.0 // indirect
