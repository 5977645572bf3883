#!/usr/bin/env python3
"""`spillway load` measured: its own ceiling beside wrk and oha, and the 100k experiment.

    python3 scripts/bench_load.py [--only ceiling|experiment] [--duration 8]

Everything runs on loopback (127.0.0.0/8), bounded in time. Needs wrk (Debian: wrk) and oha
(`cargo install oha --locked`, looked for on PATH and in /tmp/oha/bin) for the ceiling table;
they are skipped when missing. Prints Markdown tables.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchlib import SPILLWAY, build_spillway, raise_nofile
import benchlib

PORT = 18280
URL = f"http://127.0.0.1:{PORT}"


def Server(args):
    """`spillway serve` with `args` on PORT."""
    return benchlib.Server("spillway serve", [SPILLWAY, "serve", "--addr", f"127.0.0.1:{PORT}",
                                              *args], PORT, settle=1)


def load(url, rate, duration, extra):
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    argv = [SPILLWAY, "load", url, "--rate", str(rate), "--duration", f"{duration}s",
            "--warmup", "2s", "--timeout", "5s", "--quiet", "--json", out, *extra]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=duration + 120)
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    return report


def lag(r):
    v = r["send_lag_p99_ms"]
    return "- (no lane was ever free)" if v is None else f"{v:.2f} ms"


def mib(b):
    return f"{b / 2**20:,.0f} MiB"


def ceiling(duration):
    conns = 100
    print(f"\n## Generator ceiling: trivial endpoint (`serve --mode naive`, /healthz), "
          f"{conns} connections, {duration} s\n")
    print("| client | offered | achieved | p50 | p99 | generator lag p99 |")
    print("|---|---|---|---|---|---|")
    server = Server(["--mode", "naive"])
    try:
        for rate in [50_000, 100_000, 130_000, 160_000]:
            r = load(f"{URL}/healthz", rate, duration, ["--connections", str(conns)])
            ok = r["latency"]["2xx"]
            print(f"| spillway load | {rate:,}/s | {r['achieved_rate']:,.0f}/s | "
                  f"{ok['p50_ms']:.2f} ms | {ok['p99_ms']:.2f} ms | "
                  f"{lag(r)} |", flush=True)
        if shutil.which("wrk"):
            out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--latency",
                                  f"{URL}/healthz"], capture_output=True, text=True,
                                 timeout=duration + 60).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p50 = re.search(r"\s50%\s+(\S+)", out).group(1)
            p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
            print(f"| wrk -t2 (closed loop) | as fast as it can | {rps:,.0f}/s | {p50} | {p99} "
                  f"| |", flush=True)
        oha = shutil.which("oha") or ("/tmp/oha/bin/oha" if os.path.exists("/tmp/oha/bin/oha")
                                      else None)
        if oha:
            out = subprocess.run([oha, "-c", str(conns), "-z", f"{duration}s", "--no-tui",
                                  f"{URL}/healthz"], capture_output=True, text=True,
                                 timeout=duration + 60).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            unit = {"secs": 1e3, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
            m50 = re.search(r"50.00% in ([\d.]+) (\S+)", out)
            m99 = re.search(r"99.00% in ([\d.]+) (\S+)", out)
            p50 = float(m50.group(1)) * unit[m50.group(2)]
            p99 = float(m99.group(1)) * unit[m99.group(2)]
            print(f"| oha (closed loop) | as fast as it can | {rps:,.0f}/s | {p50:.2f} ms | "
                  f"{p99:.2f} ms | |", flush=True)
    finally:
        server.stop()


def experiment(duration, workers):
    pool_args = ["--min-workers", str(workers), "--max-workers", str(workers),
                 "--queue", str(workers)]
    server = Server(["--mode", "pool", *pool_args])
    try:
        cap = load(f"{URL}/work", workers / 0.010 * 2, duration, ["--connections", "1000"])
    finally:
        server.stop()
    capacity = cap["latency"]["2xx"]["rate"]
    print(f"\n## The 100k experiment: 10 ms handler, {workers} workers / permits, capacity "
          f"{capacity:,.0f}/s (pool goodput when offered 2x its nominal "
          f"{workers / 0.010:,.0f}/s), {duration} s after 2 s of warm-up\n")
    print("| mode | load | offered | goodput (2xx/s) | 503/s | admitted p99 | 503 p99 | "
          "timeouts + errors | server peak RSS | generator lag p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    shapes = [
        ("HTTP/1.1, 10,000 conns", ["--connections", "10000"]),
        ("HTTP/2, 1,000 conns x 100 streams", ["--http2", "--connections", "1000",
                                               "--streams-per-connection", "100"]),
        ("HTTP/1.1, 19,000 conns, 2 processes, 16 source addrs",
         ["--connections", "19000", "--processes", "2", "--source-addrs",
          "127.0.0.1-127.0.0.16"]),
    ]
    modes = [("naive", []), ("semaphore", ["--max-workers", str(workers)]),
             ("pool", pool_args)]
    for shape, extra in shapes:
        for mode, margs in modes:
            for factor in [1, 2, 5, 10]:
                rate = round(capacity * factor)
                server = Server(["--mode", mode, *margs])
                try:
                    r = load(f"{URL}/work", rate, duration, extra)
                    peak = server.peak_rss()
                finally:
                    server.stop()
                ok, shed = r["latency"]["2xx"], r["latency"]["503"]
                errors = r["timeouts"] + r["connect_errors"] + r["other_errors"] + \
                    r["latency"]["other"]["count"]
                print(f"| {mode} | {shape} | {factor}x = {rate:,}/s | {ok['rate']:,.0f} "
                      f"({100 * ok['rate'] / capacity:.0f}%) | {shed['rate']:,.0f} | "
                      f"{ok['p99_ms']:,.1f} ms | "
                      f"{shed['p99_ms']:.2f} ms | {errors:,} | {mib(peak)} | "
                      f"{lag(r)} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--workers", type=int, default=100)
    p.add_argument("--only", choices=["ceiling", "experiment"], action="append")
    a = p.parse_args()
    raise_nofile()
    build_spillway()
    print(f"machine: {os.cpu_count()} cores; load: {open('/proc/loadavg').read().split()[0]}")
    only = a.only or ["ceiling", "experiment"]
    if "ceiling" in only:
        ceiling(a.duration)
    if "experiment" in only:
        experiment(a.duration, a.workers)


if __name__ == "__main__":
    sys.exit(main())
