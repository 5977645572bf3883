#!/usr/bin/env python3
"""Soak: `spillway serve` in pool mode at 5x overload for N minutes under `spillway load`,
sampling every 10 s the server's RSS, open descriptors, workers and busy workers (from
/proc and /metrics) and the load's p99 of 200s (the worst per-second p99 of the window), then
checking that RSS and descriptors stay flat within 5% after the first minute, that the p99 has
no trend, and that the books balance in /metrics. Prints a Markdown table and writes an SVG
chart beside it.

    python3 scripts/soak.py [--minutes 10] [--faults] [--out soak.md]

The server runs 10 fixed workers for jobs of 20 ms: a capacity of 500 requests/s, offered
2,500/s (5x). `--faults` adds the fault mix of scripts/faults.py (1% panic, 0.1% hang, 1% 10x
memory). Everything runs on 127.0.0.1; the run is bounded by --minutes. Builds the release
binary first.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

PORT = 18490
WORKERS = 10
WAIT_MS = 20
CAPACITY = WORKERS * 1000 / WAIT_MS  # requests/s the pool completes
OVERLOAD = 5
SAMPLE_S = 10
FAULTS = ["--fault-panic", "0.01", "--fault-hang", "0.001", "--fault-alloc", "0.01"]


def serve_argv(faults):
    argv = [benchlib.SPILLWAY, "serve", "--mode", "pool", "--addr", f"127.0.0.1:{PORT}",
            "--min-workers", str(WORKERS), "--max-workers", str(WORKERS), "--limit", "fixed",
            "--queue", str(WORKERS), "--wait-ms", str(WAIT_MS), "--alloc-kib", "64"]
    return argv + (FAULTS if faults else [])


def scrape():
    """The server's /metrics as {series: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def books(m):
    """(submitted, ended + queued + busy, each outcome): equal when no job was lost."""
    ended = {k: v for k, v in m.items() if k.startswith("spillway_jobs_ended_total")}
    submitted = m['spillway_jobs_submitted_total{pool="serve"}']
    inside = m['spillway_queue_depth{pool="serve"}'] + m['spillway_workers_busy{pool="serve"}']
    return submitted, sum(ended.values()) + inside, ended


def run(seconds, faults, timeout_s=2):
    """Serves and loads for `seconds`; returns (samples, load report, final metrics)."""
    server = benchlib.Server("spillway pool", serve_argv(faults), PORT)
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    load = subprocess.Popen(
        [benchlib.SPILLWAY, "load", "--rate", str(CAPACITY * OVERLOAD), "--duration",
         f"{seconds}s", "--connections", "400", "--timeout", f"{timeout_s}s", "--quiet",
         "--json", out, f"http://127.0.0.1:{PORT}/work"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    start = time.time()
    try:
        while load.poll() is None and time.time() - start < seconds + 30:
            time.sleep(SAMPLE_S - (time.time() - start) % SAMPLE_S)
            if load.poll() is not None:
                break
            m = scrape()
            samples.append({
                "t": round(time.time() - start),
                "rss_mib": server.rss()[0] / 2**20,
                "fds": fds(server.proc.pid),
                "workers": m['spillway_workers{pool="serve"}'],
                "busy": m['spillway_workers_busy{pool="serve"}'],
            })
        load.wait(timeout=60)
        time.sleep(timeout_s + 1)  # let the last requests end
        final = scrape()
    finally:
        if load.poll() is None:
            load.kill()
        server.stop()
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    series = report["series"]
    for s in samples:
        window = [x["p99_ok_ms"] for x in series if s["t"] - SAMPLE_S <= x["second"] < s["t"]]
        s["p99_ms"] = max(window, default=0.0)
    return samples, report, final


def flat(values, within):
    """Whether every value is within `within` (a fraction) of the first."""
    return all(abs(v - values[0]) <= within * values[0] for v in values) if values else True


def trend(values):
    """The least-squares slope of values per sample, relative to their mean."""
    n = len(values)
    if n < 3 or sum(values) == 0:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    slope = sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum(
        (i - mx) ** 2 for i in range(n))
    return slope * n / my


def checks(samples, final, settle_s):
    after = [s for s in samples if s["t"] >= settle_s] or samples[-1:]
    submitted, accounted, _ = books(final)
    return {
        f"RSS within 5% after {settle_s}s": flat([s["rss_mib"] for s in after], 0.05),
        f"descriptors within 5% after {settle_s}s": flat([s["fds"] for s in after], 0.05),
        "p99 without a trend (slope over the run < 50% of its mean)":
            abs(trend([s["p99_ms"] for s in after])) < 0.5,
        f"books balance in /metrics ({submitted:.0f} submitted = {accounted:.0f} ended or inside)":
            submitted == accounted,
    }


def table(samples):
    lines = ["| t (s) | RSS (MiB) | descriptors | workers | busy | p99 of 200s (ms) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for s in samples:
        lines.append(f"| {s['t']} | {s['rss_mib']:.1f} | {s['fds']} | {s['workers']:.0f} | "
                     f"{s['busy']:.0f} | {s['p99_ms']:.1f} |")
    return "\n".join(lines)


def svg(samples, path):
    """Three small line charts (RSS, descriptors, p99) over time, as one SVG."""
    w, h, pad = 300, 160, 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * w}" height="{h}" '
             'font-family="sans-serif" font-size="11">']
    for i, (key, title) in enumerate([("rss_mib", "RSS (MiB)"), ("fds", "open descriptors"),
                                      ("p99_ms", "p99 of 200s (ms)")]):
        xs = [s["t"] for s in samples]
        ys = [s[key] for s in samples]
        if not xs:
            continue
        top = max(ys) * 1.1 or 1
        right = max(xs) or 1
        pts = " ".join(f"{i * w + pad + (x / right) * (w - 2 * pad):.1f},"
                       f"{h - pad - (y / top) * (h - 2 * pad):.1f}" for x, y in zip(xs, ys))
        parts.append(f'<text x="{i * w + pad}" y="15">{title}, 0-{top:.0f}, over {right}s</text>')
        parts.append(f'<rect x="{i * w + pad}" y="{pad}" width="{w - 2 * pad}" '
                     f'height="{h - 2 * pad}" fill="none" stroke="#ccc"/>')
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def finish(lines, results, out):
    """Writes and prints `lines` and the checks; exits 1 if any failed."""
    lines = lines + [f"- {'ok ' if ok else 'FAILED'} {name}" for name, ok in results.items()]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if all(results.values()) else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--faults", action="store_true", help="add the fault mix")
    p.add_argument("--out", default="soak.md", help="Markdown output (the SVG goes beside it)")
    args = p.parse_args()
    benchlib.build_spillway()
    benchlib.raise_nofile()
    seconds = int(args.minutes * 60)
    settle = 60 if seconds >= 180 else seconds // 3
    samples, report, final = run(seconds, args.faults)
    chart = os.path.splitext(args.out)[0] + ".svg"
    svg(samples, chart)
    results = checks(samples, final, settle)
    statuses = report["statuses"]
    text = [f"# Soak: pool mode at {OVERLOAD}x overload ({CAPACITY * OVERLOAD:.0f} requests/s "
            f"offered to a capacity of {CAPACITY:.0f}/s) for {seconds} s"
            + (", with faults " + " ".join(FAULTS) if args.faults else ""),
            "", f"statuses: {statuses}; timeouts {report['timeouts']}, "
            f"errors {report['other_errors']}", "", table(samples), "",
            f"![soak]({os.path.basename(chart)})", ""]
    finish(text, results, args.out)


if __name__ == "__main__":
    main()
