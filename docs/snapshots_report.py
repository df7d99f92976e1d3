#!/usr/bin/env python3
"""Prints the tables of docs/snapshots.md from the results of
docs/snapshots.sh (WORK/*/results-*.json):

  python3 docs/snapshots_report.py WORK [STEP]

STEP (default 100000): one row of the growth table per STEP writes applied.
"""

import glob
import json
import os
import statistics
import sys


def mib(b):
    return f"{b / 2**20:.1f}"


def growth(res, step):
    """Rows of the samples nearest to every step writes (applied index)."""
    rows = res["samples"]
    print(f"\n#### {res['label']}: {res['writes'][-1]:,} PUTs, RSS and data directory (MiB) per replica\n")
    ids = sorted(rows[0]["replicas"], key=int)
    head = ["applied"] + [f"RSS {i}" for i in ids] + [f"dir {i}" for i in ids] + ["files 1", "snapshot 1", "log entries 1"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    want, picked = 0, []
    for r in rows:
        a = max((x["applied"] or 0) for x in r["replicas"].values())
        if a >= want or r is rows[-1]:
            picked.append(r)
            want = (a // step + 1) * step
    for r in picked:
        reps = [r["replicas"][i] for i in ids]
        a = max((x["applied"] or 0) for x in reps)
        first = reps[0]
        cells = [f"{a:,}"] + [mib(x["rss_kib"] * 1024) for x in reps] + [mib(x["dir_bytes"]) for x in reps]
        cells += [str(first["files"]), f"{first['snapshot_index'] or 0:,}", f"{first['log_entries'] if first['log_entries'] is not None else '-'}"]
        print("| " + " | ".join(cells) + " |")
    peak = lambda k: max(x[k] for r in rows for x in r["replicas"].values())
    print(f"\nPeak over all {len(rows)} samples: RSS {mib(peak('rss_kib') * 1024)} MiB, data directory "
          f"{mib(peak('dir_bytes'))} MiB (allocated {mib(peak('dir_alloc_bytes'))} MiB).")
    for w, rep in zip(res["writes"], res["bench"]):
        b = rep["runs"][0]
        print(f"Load up to {w:,}: {b['ops']:,} PUTs in {b['seconds']:.0f} s ({b['opsPerSec']:.0f}/s; latency p50 {b['latencyMs']['p50']:.1f} ms, "
              f"p99 {b['latencyMs']['p99']:.1f} ms, max {b['latencyMs']['max']:.0f} ms), failed {b['failed'] or 0}, errors {b['errors'] or 0}.")


def restarts(res):
    rs = res["restarts"]
    print(f"\n#### {res['label']}: restarts (SIGTERM all, start all, time to a GET)\n")
    print("| PUTs before | try | SIGTERM to exit, slowest replica (s) | start to first GET served (s) | replica 1 after it: snapshot index, log entries, data dir (MiB) |")
    print("|---|---|---|---|---|")
    for r in rs:
        n = sum(1 for x in rs if x["writes"] == r["writes"] and rs.index(x) <= rs.index(r))
        s = r["status"].get("1") or {}
        print(f"| {r['writes']:,} | {n} | {max(r['stop_seconds'].values()):.2f} | {r['read_seconds']:.2f} | "
              f"{s.get('snapshotIndex', '-')}, {s.get('logEntries', s.get('lastLog'))}, {mib(r['dir_bytes']['1'])} |")
    print()
    for w in res["writes"]:
        ts = [r["read_seconds"] for r in rs if r["writes"] == w]
        print(f"- after {w:,} PUTs, start to first GET: min {min(ts):.2f} s, median {statistics.median(ts):.2f} s, max {max(ts):.2f} s")


def catchup(res):
    c = res.get("catchup")
    if not c:
        return
    b, l, f0 = c["bench"]["runs"][0], c["leader_at_restart"], c["follower_before"]
    print(f"\n#### {res['label']}: replica {c['follower']} killed (-9) for {b['ops']:,} PUTs, then restarted\n")
    print(f"- Replica {c['follower']} when killed: lastLog {f0['lastLog']:,}, snapshot {f0['snapshotIndex']:,}, "
          f"data directory {mib(c['follower_dir_before'][0])} MiB.")
    gone = "" if l["snapshotIndex"] <= f0["lastLog"] else (
        f": of what replica {c['follower']} lacked, {f0['lastLog'] + 1:,} to {l['snapshotIndex']:,} is only in the snapshot")
    print(f"- Leader {l['id']} at the restart: commit {l['commit']:,}, snapshot {l['snapshotIndex']:,}, its log holds "
          f"{l['logEntries']:,} entries, from index {l['snapshotIndex'] + 1:,}{gone}.")
    print(f"- Caught up (applied = {l['commit']:,}) {c['seconds']:.2f} s after its start; data directory then "
          f"{mib(c['follower_dir_after'][0])} MiB.\n")
    print(f"| s after start | applied | commit | snapshot index | log entries |")
    print("|---|---|---|---|---|")
    for p in c["trace"]:
        print(f"| {p['t']:.2f} | {p['applied']:,} | {p['commit']:,} | {p['snapshot_index']:,} | {p['log_entries']:,} |")


def main():
    work = sys.argv[1]
    step = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    for path in sorted(glob.glob(os.path.join(work, "*", "results-*.json")), key=lambda p: (not p.endswith("-new.json"), p)):
        with open(path) as f:
            res = json.load(f)
        if "samples" in res:
            growth(res, step)
        if res.get("restarts"):
            restarts(res)
        catchup(res)


if __name__ == "__main__":
    main()
