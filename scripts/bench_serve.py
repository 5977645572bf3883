#!/usr/bin/env python3
"""Measures `spillway serve` beside seed 001's Go servers, on loopback, in one run.

    python3 scripts/bench_serve.py [--duration 10] [--only seed|overload|h2|ratio]

`--only ratio` is issue 11's goal 3 on its own (about 2 minutes): `serve --mode pool` against
`--mode naive` at 1,000 connections, alternately (A/B/A/B, `--rounds`), then the pool's goodput
at 10x its capacity, open loop with `spillway load`; it prints the ratios and the goodput.
`--pool-arg=--pool-threads=0` (repeatable) adds flags to the pool server in both parts.

Needs wrk and h2load (Debian: wrk, nghttp2-client). The Go servers of seed 001 are built from
../shared/anchors/go-seed2 (beside this repository) with Go 1.19 (Debian: golang-1.19-go); when
either is missing they are skipped, and the script says how to get them. Run as root, it installs
the missing Debian packages with apt-get. Every server listens on 127.0.0.1 and every load run is
bounded in time. Prints Markdown tables.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from benchlib import GO, ROOT, SPILLWAY, build_go_seed, build_spillway, raise_nofile
import benchlib

PORT = 18180


def Server(name, argv):
    return benchlib.Server(name, argv, PORT)


def ensure_tools(build=True):
    missing = [p for p, exe in [("wrk", "wrk"), ("nghttp2-client", "h2load")] if not shutil.which(exe)]
    if not os.path.exists(GO):
        missing.append("golang-1.19-go")
    if missing and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=False,
                       stdout=subprocess.DEVNULL)
    if build:
        build_spillway()


def servers(go_bin, which):
    url_args = ["--addr", f"127.0.0.1:{PORT}"]
    table = {
        "go naive": [go_bin, "-mode", "naive", "-addr", f"127.0.0.1:{PORT}"] if go_bin else None,
        "go semaphore": [go_bin, "-mode", "sem", "-addr", f"127.0.0.1:{PORT}"] if go_bin else None,
        "spillway naive": [SPILLWAY, "serve", "--mode", "naive", *url_args],
        "spillway semaphore": [SPILLWAY, "serve", "--mode", "semaphore", *url_args],
        "spillway pool": [SPILLWAY, "serve", "--mode", "pool", *url_args],
    }
    return [(k, v) for k, v in table.items() if v and k in which]


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(conns, seconds, path="/work"):
    threads = 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
         f"http://127.0.0.1:{PORT}{path}"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ["50", "99"]:
        res[f"p{pct}"] = to_ms(re.search(rf"\s{pct}(?:\.000)?%\s+(\S+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    res["total"] = total
    res["good_rps"] = res["rps"] * (total - res["non2xx"]) / total if total else 0.0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["errors"] = sum(int(x) for x in errs.groups()) if errs else 0
    return res


def scrape():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as r:
        return r.read().decode()


def class_histogram(text, cls):
    """Cumulative (upper bound, count) pairs of one status class's duration histogram."""
    pairs = []
    for m in re.finditer(
            rf'spillway_http_request_duration_seconds_bucket{{le="([^"]+)",class="{cls}"}} (\d+)',
            text):
        pairs.append((float(m.group(1)), int(m.group(2))))
    return pairs


def quantile(before, after, cls, q):
    """Prometheus' histogram_quantile over the increase between two scrapes, in ms."""
    a = dict(class_histogram(after, cls))
    b = dict(class_histogram(before, cls))
    bounds = sorted(a)
    counts = [a[le] - b.get(le, 0) for le in bounds]
    if not counts or counts[-1] == 0:
        return None
    rank = q * counts[-1]
    prev_le, prev_c = 0.0, 0
    for le, c in zip(bounds, counts):
        if c >= rank:
            if le == float("inf"):
                return prev_le * 1e3
            return (prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1)) * 1e3
        prev_le, prev_c = le, c
    return None


def fmt_mb(b):
    return f"{b / 2**20:.0f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


def seed_comparison(go_bin, seconds, conn_levels):
    print(f"\n## Seed 001's handler (10 ms sleep), wrk -t2 -cN -d{seconds}s\n")
    print("| server | conns | req/s | 2xx/s | p50 | p99 | non-2xx | socket errors | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    which = ["go naive", "go semaphore", "spillway naive", "spillway semaphore", "spillway pool"]
    for conns in conn_levels:
        for name, argv in servers(go_bin, which):
            server = Server(name, argv)
            try:
                wrk(min(conns, 200), 2)  # warm up
                r = wrk(conns, seconds)
                _, peak = server.rss()
            finally:
                server.stop()
            print(f"| {name} | {conns:,} | {r['rps']:,.0f} | {r['good_rps']:,.0f} | "
                  f"{r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['non2xx']:,} | {r['errors']:,} | "
                  f"{fmt_mb(peak)} |", flush=True)


def overload(seconds, workers):
    cap_conns = workers
    print(f"\n## Overload: pool of {workers} workers and {workers} queue slots, 10 ms handler "
          f"(capacity {workers / 0.010:,.0f}/s), wrk -t2 -d{seconds}s\n")
    print("| conns | offered (req/s) | x capacity | goodput (2xx/s) | % of capacity | 503/s | "
          "wrk p50 | wrk p99 | server p99 2xx | server p99 503 | RSS start -> peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    argv = [SPILLWAY, "serve", "--mode", "pool", "--addr", f"127.0.0.1:{PORT}", "--min-workers",
            str(workers), "--max-workers", str(workers), "--queue", str(workers)]
    server = Server("pool", argv)
    try:
        base = wrk(cap_conns, seconds)
        capacity = base["good_rps"]
        print(f"| {cap_conns:,} (baseline) | {base['rps']:,.0f} | 1.0 | {capacity:,.0f} | 100% | "
              f"{base['rps'] - base['good_rps']:,.0f} | {base['p50']:.1f} ms | "
              f"{base['p99']:.1f} ms | | | |", flush=True)
        for conns in [1_000, 10_000]:
            rss0, _ = server.rss()
            before = scrape()
            r = wrk(conns, seconds)
            after = scrape()
            rss1, peak = server.rss()
            p2 = quantile(before, after, "2xx", 0.99)
            p5 = quantile(before, after, "503", 0.99)
            print(f"| {conns:,} | {r['rps']:,.0f} | {r['rps'] / capacity:.1f} | "
                  f"{r['good_rps']:,.0f} | {100 * r['good_rps'] / capacity:.0f}% | "
                  f"{r['rps'] - r['good_rps']:,.0f} | {r['p50']:.2f} ms | {r['p99']:.1f} ms | "
                  f"{p2:.1f} ms | {p5:.2f} ms | {fmt_mb(rss0)} -> {fmt_mb(peak)} |", flush=True)
    finally:
        server.stop()


def h2(go_bin, seconds, conns, streams):
    print(f"\n## HTTP/2: h2load -t2 -c{conns} -m{streams} -D {seconds} "
          f"({conns * streams:,} concurrent requests), 10 ms handler\n")
    print("| server | req/s | 2xx | 503 | stream errors | mean | max | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    big = ["--max-workers", str(conns * streams), "--queue", str(conns * streams)]
    runs = [
        ("spillway naive", [SPILLWAY, "serve", "--mode", "naive"]),
        ("spillway pool (100k workers)", [SPILLWAY, "serve", "--mode", "pool", *big]),
        ("spillway pool (defaults: 1,000 + 1,000)", [SPILLWAY, "serve", "--mode", "pool"]),
    ]
    for name, argv in runs:
        server = Server(name, argv + ["--addr", f"127.0.0.1:{PORT}"])
        try:
            out = subprocess.run(
                ["h2load", "-t2", f"-c{conns}", f"-m{streams}", "-D", str(seconds),
                 "--warm-up-time", "2", f"http://127.0.0.1:{PORT}/work"],
                capture_output=True, text=True, timeout=seconds + 120).stdout
            _, peak = server.rss()
        finally:
            server.stop()
        rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1))
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        reqs = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, "
                         r"(\d+) errored", out)
        lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        print(f"| {name} | {rps:,.0f} | {int(codes.group(1)):,} | {int(codes.group(4)):,} | "
              f"{int(reqs.group(2)):,} | {lat.group(3)} | {lat.group(2)} | "
              f"{fmt_mb(peak)} |", flush=True)


def load(rate, seconds, conns, streams=None):
    """One open-loop run of `spillway load` against /work; its JSON report. With `streams`, over
    HTTP/2 with that many concurrent streams per connection."""
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    argv = [SPILLWAY, "load", f"http://127.0.0.1:{PORT}/work", "--rate", str(round(rate)),
            "--duration", f"{seconds}s", "--warmup", "2s", "--timeout", "5s",
            "--connections", str(conns), "--quiet", "--json", out]
    if streams:
        argv += ["--http2", "--streams-per-connection", str(streams)]
    try:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=seconds + 120)
        with open(out) as f:
            return json.load(f)
    finally:
        os.unlink(out)


def cpu_seconds(pid):
    """User + system CPU time a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratio(seconds, rounds, pool_extra, workers, streams):
    """Pool against naive at 1,000 connections, alternately, then the pool's 10x goodput."""
    conns = 1_000
    url_args = ["--addr", f"127.0.0.1:{PORT}"]
    print(f"\n## Pool against naive: wrk -t2 -c{conns} -d{seconds}s, 10 ms handler, "
          f"{rounds} rounds A/B\n")
    print("| round | naive req/s | pool req/s | req/s ratio | naive p99 | pool p99 | p99 ratio | "
          "server CPU/req naive | pool | ratio | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rps, p99, cpu = [], [], []
    for n in range(1, rounds + 1):
        runs = {}
        for mode, extra in [("naive", []), ("pool", pool_extra)]:
            server = Server(mode, [SPILLWAY, "serve", "--mode", mode, *url_args, *extra])
            try:
                wrk(200, 2)  # warm up
                before = cpu_seconds(server.proc.pid)
                runs[mode] = wrk(conns, seconds)
                used = cpu_seconds(server.proc.pid) - before
                runs[mode]["cpu_us"] = 1e6 * used / max(runs[mode]["total"], 1)
            finally:
                server.stop()
        naive, pool = runs["naive"], runs["pool"]
        rps.append(pool["rps"] / naive["rps"])
        p99.append(pool["p99"] / naive["p99"])
        cpu.append(pool["cpu_us"] / naive["cpu_us"])
        print(f"| {n} | {naive['rps']:,.0f} | {pool['rps']:,.0f} | {rps[-1]:.3f}x | "
              f"{naive['p99']:.1f} ms | {pool['p99']:.1f} ms | {p99[-1]:.3f}x | "
              f"{naive['cpu_us']:.1f} us | {pool['cpu_us']:.1f} us | {cpu[-1]:.3f}x | "
              f"{open('/proc/loadavg').read().split()[0]} |", flush=True)
    geo = lambda xs: math.prod(xs) ** (1 / len(xs))
    print(f"\npool / naive over {rounds} rounds (geometric mean): req/s **{geo(rps):.3f}x** "
          f"(goal >= 0.97), p99 **{geo(p99):.3f}x** (goal <= 1.10), server CPU per request "
          f"**{geo(cpu):.3f}x** (what the req/s ratio tends to when the CPU is the limit)")
    overload_goodput(seconds, pool_extra, workers, streams)


def overload_goodput(seconds, pool_extra, workers, streams):
    """The pool's goodput at 10x its capacity, open loop over 1,000 connections: HTTP/1.1, or
    HTTP/2 with `streams` concurrent streams each (the 100k experiment's shape with 100)."""
    pool_args = ["--min-workers", str(workers), "--max-workers", str(workers),
                 "--queue", str(workers), *pool_extra]
    argv = [SPILLWAY, "serve", "--mode", "pool", "--addr", f"127.0.0.1:{PORT}", *pool_args]
    server = Server("pool", argv)
    try:
        # Capacity: the goodput when offered twice the nominal rate (the 100k experiment's).
        cap = load(workers / 0.010 * 2, seconds, 1_000, streams)["latency"]["2xx"]["rate"]
        r = load(cap * 10, seconds, 1_000, streams)
    finally:
        server.stop()
    ok, shed = r["latency"]["2xx"], r["latency"]["503"]
    errors = r["timeouts"] + r["connect_errors"] + r["other_errors"]
    shape = f"HTTP/2 x {streams} streams" if streams else "HTTP/1.1"
    print(f"\n10x overload, open loop (`spillway load`, 1,000 {shape} connections, {seconds} s "
          f"after 2 s of warm-up), pool of {workers} workers and {workers} queue slots: "
          f"capacity {cap:,.0f}/s, offered {cap * 10:,.0f}/s, goodput {ok['rate']:,.0f}/s = "
          f"**{100 * ok['rate'] / cap:.0f}%** of capacity (goal >= 95%); admitted p99 "
          f"{ok['p99_ms']:.1f} ms, {shed['rate']:,.0f} shed/s with p99 {shed['p99_ms']:.2f} ms, "
          f"{errors:,} timeouts + errors; load avg {open('/proc/loadavg').read().split()[0]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per load run")
    p.add_argument("--only", choices=["seed", "overload", "h2", "ratio"], action="append")
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds of the ratio table")
    p.add_argument("--pool-arg", action="append", default=[],
                   help="extra flag for the pool server of the ratio table (repeatable)")
    p.add_argument("--no-build", action="store_true", help="use the binary already built")
    p.add_argument("--conns", type=int, action="append", help="connection levels (seed table)")
    p.add_argument("--workers", type=int, default=100, help="pool workers in the overload table")
    p.add_argument("--h2-streams", type=int, default=0, metavar="N",
                   help="run the ratio table's 10x overload over HTTP/2 with N streams per "
                        "connection (0: HTTP/1.1, the default)")
    a = p.parse_args()
    if a.h2_streams < 0:
        p.error(f"--h2-streams must be 0 (HTTP/1.1) or a positive stream count, not {a.h2_streams}")
    ensure_tools(build=not a.no_build)
    raise_nofile()
    only = a.only or ["seed", "overload", "h2"]
    go_bin = build_go_seed() if "seed" in only else None
    print(f"machine: {os.cpu_count()} cores; load: {open('/proc/loadavg').read().split()[0]}")
    if "seed" in only:
        seed_comparison(go_bin, a.duration, a.conns or [1_000, 10_000])
    if "overload" in only:
        overload(a.duration, a.workers)
    if "h2" in only:
        h2(go_bin, a.duration, 1_000, 100)
    if "ratio" in only:
        ratio(a.duration, a.rounds, a.pool_arg, a.workers, a.h2_streams)


if __name__ == "__main__":
    sys.exit(main())
