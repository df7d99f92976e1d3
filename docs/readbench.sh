#!/bin/bash
# GET throughput: ReadIndex (default) vs through the log, on a local 3-replica cluster.
set -u
mode=$1; out=$2
d=/tmp/kvr-$mode; rm -rf $d; mkdir -p $d
extra=""; [ "$mode" = log ] && extra="-reads-through-log"
/tmp/raftkv2 -data $d/data -base-http 127.0.0.1:18201 -base-raft 127.0.0.1:19201 $extra > $d/launcher.log 2>&1 &
lp=$!
for i in $(seq 1 100); do grep -q "is the leader" $d/launcher.log && break; sleep 0.2; done
A=https://127.0.0.1:18201,https://127.0.0.1:18202,https://127.0.0.1:18203
/tmp/raftkv2 bench -addr $A -ca $d/data/certs/ca.crt -token-file $d/data/tokens -clients 16,64 -duration 10s -warmup 2s -put-ratio 0 > $out 2> $d/bench.err
kill -INT $lp; wait $lp 2>/dev/null
tail -1 $d/bench.err >&2
