#!/usr/bin/env bash
# Prints the timing table of the lab suite (docs/timing.md): builds the test
# binary once without -race (so compilation is not counted), runs 4A and 4B,
# and reports per test seconds, RPCs and bytes, and wall/user/sys totals.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/raft.test
go test -c -o "$bin" ./lab
for part in 4A 4B; do
  out=$(mktemp)
  /usr/bin/time -f "TIME %e %U %S" "$bin" -test.run "$part" >"$out" 2>&1 || { cat "$out"; exit 1; }
  echo "### $part"
  echo
  echo "| test | seconds | peers | RPCs | bytes | commands |"
  echo "|---|---:|---:|---:|---:|---:|"
  awk '/^Test \(/ { sub(/^Test \([^)]*\): /, ""); sub(/ \.\.\.$/, ""); name=$0 }
       /\.\.\. Passed --/ { printf "| %s | %s | %s | %s | %s | %s |\n", name, $4, $5, $6, $7, $8 }
       /^TIME/ { printf "\nwall %s s, user %s s, sys %s s (CPU %.2f s)\n\n", $2, $3, $4, $3+$4 }' "$out"
  rm -f "$out"
done
rm -rf "$(dirname "$bin")"
