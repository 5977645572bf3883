#!/usr/bin/env python3
"""The live dashboard's cost: serve under a 10x overload with 0, then 100 open /events streams.

The server is the pool with 10 workers and 10 queue slots and a 10 ms job (about 1,000
requests/s); `spillway load` offers 10x that for --duration seconds over 100 connections, once
with nobody watching and once with 100 subscribers reading /events (five JSON frames a second
each, as 100 open dashboards would). It reports the load generator's figures (goodput, shed,
p99 of each), the server's CPU time, and what the subscribers received.

One run each, on whatever machine this is: on a shared 2-core machine the differences between
two runs without subscribers are of the same order, so read the table as "no visible cost" or
"a cost", not as a precise figure.

Usage: python3 scripts/bench_dashboard.py [--duration 10] [--subscribers 100]
"""

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

PORT = 18093
WORKERS = 10
WAIT_MS = 10
CAPACITY = WORKERS * 1000 / WAIT_MS


def cpu_seconds(pid):
    """User + system CPU time of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Subscribers:
    """`n` open /events streams, read on one thread; counts the frames and bytes received."""

    def __init__(self, n):
        self.frames = 0
        self.bytes = 0
        self.closed = 0
        self.stop = threading.Event()
        self.selector = selectors.DefaultSelector()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.setblocking(False)
            self.selector.register(s, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()
                    self.closed += 1
                    continue
                self.bytes += len(data)
                self.frames += data.count(b"data: ")

    def close(self):
        self.stop.set()
        self.thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def scrape(name):
    """The value of one unlabelled series in /metrics."""
    with socket.create_connection(("127.0.0.1", PORT)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := s.recv(1 << 16):
            text += chunk
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def run(subscribers, seconds):
    argv = [benchlib.SPILLWAY, "serve", "--mode", "pool", "--limit", "fixed",
            "--addr", f"127.0.0.1:{PORT}", "--min-workers", str(WORKERS),
            "--max-workers", str(WORKERS), "--queue", str(WORKERS), "--wait-ms", str(WAIT_MS)]
    server = benchlib.Server("pool", argv, PORT)
    watchers = None
    try:
        if subscribers:
            watchers = Subscribers(subscribers)
            time.sleep(1)
        cpu0 = cpu_seconds(server.proc.pid)
        frames0 = watchers.frames if watchers else 0
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([benchlib.SPILLWAY, "load", f"http://127.0.0.1:{PORT}/work",
                            "--rate", str(int(10 * CAPACITY)), "--duration", f"{seconds}s",
                            "--connections", "100", "--timeout", "5s", "--quiet",
                            "--json", out.name], check=True, stdout=subprocess.DEVNULL)
            report = json.load(open(out.name))
        cpu = cpu_seconds(server.proc.pid) - cpu0
        frames = (watchers.frames - frames0) if watchers else 0
        dropped = scrape("spillway_http_event_subscribers_dropped_total")
    finally:
        if watchers:
            watchers.close()
        server.stop()
    lat = report["latency"]
    return {
        "subscribers": subscribers,
        "offered": report["offered_rate"],
        "achieved": report["achieved_rate"],
        "goodput": lat["2xx"]["rate"],
        "shed": lat["503"]["rate"],
        "p99_2xx": lat["2xx"]["p99_ms"],
        "p99_503": lat["503"]["p99_ms"],
        "cpu_per_s": cpu / report["elapsed_s"],
        "frames_per_s": frames / report["elapsed_s"],
        "dropped": dropped,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    p.add_argument("--subscribers", type=int, default=100, help="open /events streams")
    p.add_argument("--no-build", action="store_true", help="use the release binary as built")
    args = p.parse_args()
    if not args.no_build:
        benchlib.build_spillway()
    benchlib.raise_nofile()
    print(f"pool of {WORKERS} workers, {WORKERS} queue slots, {WAIT_MS} ms job: capacity about "
          f"{CAPACITY:,.0f}/s; offered {10 * CAPACITY:,.0f}/s (10x) for {args.duration} s, "
          "100 connections\n")
    print("| /events subscribers | offered/s (achieved) | goodput (2xx/s) | shed (503/s) | "
          "p99 2xx | p99 503 | server CPU (cores) | frames received/s | dropped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in [0, args.subscribers]:
        r = run(n, args.duration)
        print(f"| {n} | {r['offered']:,.0f} ({r['achieved']:,.0f}) | {r['goodput']:,.0f} | "
              f"{r['shed']:,.0f} | {r['p99_2xx']:.1f} ms | {r['p99_503']:.2f} ms | "
              f"{r['cpu_per_s']:.2f} | {r['frames_per_s']:,.0f} | {r['dropped']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
