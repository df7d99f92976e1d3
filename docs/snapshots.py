#!/usr/bin/env python3
"""Measurements behind docs/snapshots.md: a 3-replica raftkv cluster under
many small writes (replica RSS and data directory size over time), the time
to serve reads after a restart, and the catch-up of a replica that was down.

Standard library only. Run through docs/snapshots.sh, which builds the
binaries; or by hand:

  python3 docs/snapshots.py --server BIN --bench BIN --work DIR --label new \\
      --writes 200000,500000,1000000 --catchup-writes 500000

--server is the raftkv that runs the replicas ("raftkv serve"), --bench the
raftkv whose "bench" subcommand makes the load (it may be another build).
Everything (data, logs, results-LABEL.json) goes under DIR/LABEL; the
replicas are stopped at the end, and DIR/LABEL/data is removed unless
--keep-data.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PROBE_KEY, PROBE_VALUE = "probe", "probe-value"


def free_ports(n):
    """n ports that were free a moment ago (the kernel's choice on :0)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http_json(method, url, body=None, timeout=2.0):
    """(status, decoded JSON or None); status 0 if no answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return 0, None


def dir_size(path):
    """(apparent bytes, allocated bytes, files) of the files under path."""
    size = alloc = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                st = os.stat(os.path.join(root, n))
            except FileNotFoundError:
                continue  # removed meanwhile
            size += st.st_size
            alloc += st.st_blocks * 512
            files += 1
    return size, alloc, files


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Cluster:
    """Three "raftkv serve" processes on free loopback ports."""

    def __init__(self, server, work, n=3, extra=()):
        self.server, self.work, self.n, self.extra = server, work, n, list(extra)
        ports = free_ports(2 * n)
        self.raft = {i: f"127.0.0.1:{ports[i - 1]}" for i in range(1, n + 1)}
        self.http = {i: f"127.0.0.1:{ports[n + i - 1]}" for i in range(1, n + 1)}
        self.procs = {}
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)

    def url(self, i):
        return "http://" + self.http[i]

    def addrs(self):
        return ",".join(self.url(i) for i in sorted(self.http))

    def data(self, i):
        return os.path.join(self.work, "data", str(i))

    def start(self, i):
        ids = lambda m: ",".join(f"{k}={v}" for k, v in sorted(m.items()))
        log = open(os.path.join(self.work, "logs", f"{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [self.server, "serve", "-id", str(i), "-peers", ids(self.raft), "-http-peers", ids(self.http),
             "-data", self.data(i), "-log-level", "warn"] + self.extra,
            stdout=log, stderr=log)
        log.close()

    def start_all(self):
        for i in sorted(self.http):
            self.start(i)

    def stop(self, i, sig=signal.SIGTERM, timeout=60):
        """Signals replica i and waits for it; returns the seconds it took."""
        p = self.procs.pop(i)
        t0 = time.monotonic()
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeError(f"replica {i} did not stop within {timeout}s of {sig!r}; killed")
        return time.monotonic() - t0

    def stop_all(self, sig=signal.SIGTERM):
        return {i: self.stop(i, sig) for i in sorted(self.procs)}

    def status(self, i, timeout=2.0):
        code, st = http_json("GET", self.url(i) + "/status", timeout=timeout)
        return st if code == 200 else None

    def leader(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            best = None
            for i in sorted(self.procs):
                st = self.status(i)
                if st and st["role"] == "leader" and (best is None or st["term"] > best[1]["term"]):
                    best = (i, st)
            if best:
                return best
            time.sleep(0.1)
        raise RuntimeError(f"no leader within {timeout}s")

    def put(self, key, value):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for i in sorted(self.procs):
                code, _ = http_json("PUT", f"{self.url(i)}/kv/{key}", {"value": value}, timeout=5)
                if code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"put {key}: no replica accepted it within 60s")

    def wait_read(self, key, want, timeout=600):
        """Seconds until a GET of key, at any replica, answers want."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for i in sorted(self.procs):
                code, rep = http_json("GET", f"{self.url(i)}/kv/{key}", timeout=2)
                if code == 200 and rep.get("value") == want:
                    return time.monotonic() - t0
            time.sleep(0.02)
        raise RuntimeError(f"no replica served {key} within {timeout}s")

    def kill_all(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        self.procs.clear()


class Sampler(threading.Thread):
    """Every interval seconds: each replica's RSS, data directory and status."""

    def __init__(self, cluster, interval, t0):
        super().__init__(daemon=True)
        self.c, self.interval = cluster, interval
        self.rows, self.halt = [], threading.Event()
        self.t0 = t0

    def sample(self):
        row = {"t": round(time.monotonic() - self.t0, 1), "replicas": {}}
        for i in sorted(self.c.http):
            p = self.c.procs.get(i)
            size, alloc, files = dir_size(self.c.data(i))
            st = self.c.status(i) if p else None
            row["replicas"][i] = {
                "rss_kib": rss_kib(p.pid) if p else 0, "dir_bytes": size, "dir_alloc_bytes": alloc, "files": files,
                "applied": st and st.get("applied"), "snapshot_index": st and st.get("snapshotIndex"),
                "log_entries": st and st.get("logEntries"), "log_bytes": st and st.get("logBytes")}
        self.rows.append(row)
        cells = "  ".join(
            f"r{i} rss {r['rss_kib'] / 1024:6.1f}M dir {r['dir_bytes'] / 2**20:7.1f}M applied {r['applied']}"
            for i, r in row["replicas"].items())
        print(f"  t={row['t']:6.1f}s  {cells}", flush=True)

    def run(self):
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join()
        self.sample()


def bench(binary, cluster, ops, work, name, clients):
    """Runs "raftkv bench" for ops PUTs; returns its JSON report."""
    cmd = [binary, "bench", "-addr", cluster.addrs(), "-clients", str(clients), "-ops", str(ops), "-put-ratio", "1",
           "-keys", "10000", "-value-bytes", "100", "-timeout", "60s", "-json"]
    print("  $ " + " ".join(cmd), flush=True)
    with open(os.path.join(work, "logs", f"bench-{name}.log"), "wb") as progress:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=progress, check=False)
    rep = json.loads(out.stdout)
    if out.returncode != 0:
        raise RuntimeError(f"bench exited {out.returncode}: {rep.get('error')}")
    r = rep["runs"][0]
    print(f"  bench: {r['ops']} PUTs in {r['seconds']:.1f}s, {r['opsPerSec']:.0f}/s, p50 {r['latencyMs']['p50']:.1f}ms "
          f"p99 {r['latencyMs']['p99']:.1f}ms, failed {r['failed']}, errors {r['errors']}", flush=True)
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--writes", default="1000000",
                    help="PUTs in all, or a rising list (200000,500000,1000000): the restarts are measured at each")
    ap.add_argument("--catchup-writes", type=int, default=0, help="0: no catch-up measurement")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    # SIGTERM, and SIGINT even in a background job, end the run through
    # the finally below, which stops the replicas.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("snapshots.py: terminated"))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    work = os.path.join(args.work, args.label)
    if os.path.exists(work):
        sys.exit(f"{work} exists; give another --work or --label")
    os.makedirs(work)
    c = Cluster(args.server, work)
    checkpoints = [int(w) for w in args.writes.split(",")]
    if checkpoints != sorted(checkpoints) or checkpoints[0] <= 0:
        sys.exit(f"--writes {args.writes}: want a rising list of positive numbers")
    res = {"label": args.label, "server": args.server, "writes": checkpoints, "clients": args.clients,
           "samples": [], "bench": [], "restarts": []}
    try:
        print(f"[{args.label}] cluster: HTTP {c.addrs()}; data under {work}/data", flush=True)
        c.start_all()
        c.leader()
        c.put(PROBE_KEY, PROBE_VALUE)

        t0, written = time.monotonic(), 0
        for cp in checkpoints:
            # a. The writes, sampled.
            s = Sampler(c, args.interval, t0)
            s.start()
            res["bench"].append(bench(args.bench, c, cp - written, work, f"writes-{cp}", args.clients))
            written = cp
            s.stop()
            res["samples"] += s.rows

            # b. Restarts: SIGTERM all, start all, time to a GET of the probe.
            ts = []
            for n in range(args.restarts):
                stop_s = c.stop_all()
                c.start_all()
                secs = c.wait_read(PROBE_KEY, PROBE_VALUE)
                sts = {i: c.status(i) for i in sorted(c.procs)}
                res["restarts"].append({"writes": cp, "stop_seconds": stop_s, "read_seconds": secs, "status": sts,
                                        "dir_bytes": {i: dir_size(c.data(i))[0] for i in sorted(c.procs)}})
                ts.append(secs)
                print(f"  restart {n + 1} after {cp} writes: stopped in {max(stop_s.values()):.2f}s; "
                      f"a GET served {secs:.2f}s after the start", flush=True)
            if ts:
                print(f"  restart to read after {cp} writes: min {min(ts):.2f}s median {statistics.median(ts):.2f}s "
                      f"max {max(ts):.2f}s", flush=True)

        # c. A follower down for catchup-writes writes, then restarted.
        if args.catchup_writes:
            lid, _ = c.leader()
            f = min(i for i in c.procs if i != lid)
            before = c.status(f)
            c.stop(f, signal.SIGKILL)
            res["catchup"] = {"follower": f, "leader": lid, "follower_before": before,
                              "follower_dir_before": dir_size(c.data(f))}
            print(f"  replica {f} (a follower) killed at lastLog {before['lastLog']}, snapshot {before['snapshotIndex']}", flush=True)
            res["catchup"]["bench"] = bench(args.bench, c, args.catchup_writes, work, "catchup", args.clients)
            lid, lst = c.leader()
            res["catchup"]["leader_at_restart"] = lst
            print(f"  leader {lid}: commit {lst['commit']}, snapshot {lst['snapshotIndex']}, log {lst['logEntries']} entries "
                  f"(from index {lst['snapshotIndex'] + 1}); restarting replica {f}", flush=True)
            c.start(f)
            t0 = time.monotonic()
            trace = []
            while True:
                st = c.status(f, timeout=1)
                t = time.monotonic() - t0
                if st:
                    pt = {"t": round(t, 3), "applied": st["applied"], "commit": st["commit"],
                          "snapshot_index": st["snapshotIndex"], "log_entries": st["logEntries"]}
                    if not trace or {k: v for k, v in pt.items() if k != "t"} != {k: v for k, v in trace[-1].items() if k != "t"}:
                        trace.append(pt)
                    if st["applied"] >= lst["commit"]:
                        break
                if t > 600:
                    raise RuntimeError(f"replica {f} did not catch up within 600s")
                time.sleep(0.05)
            res["catchup"].update(seconds=t, trace=trace, follower_after=c.status(f),
                                  follower_dir_after=dir_size(c.data(f)))
            print(f"  replica {f} applied {lst['commit']} (the leader's commit) {t:.2f}s after its start; trace: {trace}", flush=True)
        c.stop_all()
    finally:
        c.kill_all()
        with open(os.path.join(work, f"results-{args.label}.json"), "w") as out:
            json.dump(res, out, indent=1)
        if not args.keep_data:
            shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)


if __name__ == "__main__":
    main()
