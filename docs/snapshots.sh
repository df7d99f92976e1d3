#!/usr/bin/env bash
# Reproduces the measurements of docs/snapshots.md:
#
#   docs/snapshots.sh [WORK]      (default WORK: a new temporary directory)
#
# It builds raftkv from this checkout ("new") and from OLD_COMMIT, the code
# before snapshots ("old", in a temporary git worktree outside this one,
# removed at the end), then runs docs/snapshots.py for each: a 3-replica
# cluster of "raftkv serve" processes on free loopback ports with the
# default -snapshot-bytes; PUTs of 100-byte values over 10,000 keys by 64
# clients ("raftkv bench" of this checkout for both) up to each number of
# WRITES in turn, with replica RSS and data directory sampled every 5 s,
# and at each, RESTARTS restarts (SIGTERM all, start all, time to a GET);
# then, for "new", a follower killed (-9) during CATCHUP_WRITES more
# writes, and restarted. Results: WORK/LABEL/results-LABEL.json,
# logs in WORK/LABEL/logs; the data directories are removed.
#
# Environment: WRITES (200000,500000,1000000), CATCHUP_WRITES (500000),
# RESTARTS (3), OLD_COMMIT (f1f5d75), OLD_WRITES (the old code's WRITES;
# default: WRITES).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/raftkv-snapshots.XXXXXX)}
writes=${WRITES:-200000,500000,1000000}
catchup=${CATCHUP_WRITES:-500000}
restarts=${RESTARTS:-3}
old_commit=${OLD_COMMIT:-f1f5d75}
old_writes=${OLD_WRITES:-$writes}
mkdir -p "$work/bin"

echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM; $(uptime)"
echo "go: $(go version); new: $(git -C "$repo" rev-parse --short HEAD); old: $old_commit"

(cd "$repo" && go build -o "$work/bin/raftkv-new" ./cmd/raftkv)
old_tree=$(mktemp -d /tmp/raftkv-old.XXXXXX)
rmdir "$old_tree"
git -C "$repo" worktree add --detach "$old_tree" "$old_commit" >/dev/null
trap 'git -C "$repo" worktree remove --force "$old_tree" 2>/dev/null || true' EXIT
(cd "$old_tree" && go build -o "$work/bin/raftkv-old" ./cmd/raftkv)
git -C "$repo" worktree remove "$old_tree"

python3 "$repo/docs/snapshots.py" --server "$work/bin/raftkv-new" --bench "$work/bin/raftkv-new" \
	--work "$work" --label new --writes "$writes" --catchup-writes "$catchup" --restarts "$restarts"
python3 "$repo/docs/snapshots.py" --server "$work/bin/raftkv-old" --bench "$work/bin/raftkv-new" \
	--work "$work" --label old --writes "$old_writes" --restarts "$restarts"
python3 "$repo/docs/snapshots_report.py" "$work"
