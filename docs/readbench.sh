#!/bin/bash
# GET throughput on a local 3-replica cluster, by how the GETs are served:
#   readindex  the leader, with a round of heartbeats per read batch (the default)
#   log        through the log (-reads-through-log)
#   lease      the leader, from its lease (-lease-reads)
#   follower   every replica, followers asking the leader for the read index
#              (-follower-reads; the bench spreads its clients over the replicas)
# Usage: docs/readbench.sh MODE OUT; RAFTKV (default /tmp/raftkv2) is the binary,
# PORT_HTTP and PORT_RAFT (default 18201, 19201) the first replica's ports.
set -u
mode=$1; out=$2
bin=${RAFTKV:-/tmp/raftkv2}; ph=${PORT_HTTP:-18201}; pr=${PORT_RAFT:-19201}
d=/tmp/kvr-$mode-$ph; rm -rf $d; mkdir -p $d
extra=""; spread=""
case $mode in
readindex) ;;
log) extra="-reads-through-log" ;;
lease) extra="-lease-reads" ;;
follower) extra="-follower-reads"; spread="-spread" ;;
*) echo "unknown mode $mode: want readindex, log, lease or follower" >&2; exit 2 ;;
esac
$bin -data $d/data -base-http 127.0.0.1:$ph -base-raft 127.0.0.1:$pr $extra > $d/launcher.log 2>&1 &
lp=$!
for i in $(seq 1 100); do grep -qs "is the leader" $d/launcher.log && break; sleep 0.2; done
A=https://127.0.0.1:$ph,https://127.0.0.1:$((ph+1)),https://127.0.0.1:$((ph+2))
$bin bench -addr $A -ca $d/data/certs/ca.crt -token-file $d/data/tokens -clients 16,64 -duration 10s -warmup 2s -put-ratio 0 $spread > $out 2> $d/bench.err
kill -INT $lp; wait $lp 2>/dev/null
tail -1 $d/bench.err >&2
