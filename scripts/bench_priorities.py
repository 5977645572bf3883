#!/usr/bin/env python3
"""Issue 17's goals for priorities and deadlines, measured with `spillway simulate`, `serve` and
`load`.

    python3 scripts/bench_priorities.py --out target/bench_priorities.md [--duration 10]
        [--alloc-kib 16] [--json-dir DIR] [--http-workers 20] [--http-queue 40]
        [--http-connections 500] [--http-seconds 10]

What it runs (release build, 127.0.0.1 only, every run bounded in time):
1. the machine's capacity C for simulate's job (20 ms of waiting and --alloc-kib, 16 KiB by
   default: with the seed's 500 KiB the page faults of a loaded shared machine, not the pool,
   set the capacity), measured once and passed to every simulate run as --capacity;
2. `simulate --scenario priorities --mode pool-adaptive` (3x C: 10% critical, 30% normal,
   60% low), and `simulate --scenario step --rate 3C --mode pool-adaptive` (the same pool, the
   same load, no priorities: `try_submit`);
3. the same priorities scenario with everything at one priority (`--priority-mix normal=1`
   and `low=1`), against that step run;
4. `serve --mode pool` with a 10 ms handler, --http-workers workers and a queue of
   --http-queue, whose capacity H is measured with `load` at 2x what Little's law allows, then
   `load --priority-mix critical=0.1,low=0.9` at 3x H. --http-connections must be well above
   workers + queue: `load` keeps one request in flight per HTTP/1.1 connection, and a server
   that never holds more than its queue can take never sheds.
Goodput shares count the jobs whose fate was known when the run ended (completed, shed,
expired or displaced), not those still in flight, which the run's end cut short.
It writes the Markdown tables, the commands and the goal checks to --out (and stdout). The
machine is shared and noisy: the figures are one run's, not a distribution.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchlib import SPILLWAY, build_spillway, raise_nofile
import benchlib

PORT = 18190
P99_GOAL_MS = 100.0


def run(argv):
    print("$ spillway", " ".join(argv), file=sys.stderr)
    subprocess.run([SPILLWAY, *argv], check=True, stdout=subprocess.DEVNULL, timeout=3600)


def simulate(argv, json_dir, name):
    """Runs `spillway simulate argv`; its JSON report (kept as json_dir/name.json) and the
    command as written."""
    path = os.path.join(json_dir, f"{name}.json")
    run(["simulate", *argv, "--json", path])
    with open(path) as f:
        return json.load(f), "spillway simulate " + " ".join(argv)


def load(argv, json_dir, name):
    path = os.path.join(json_dir, f"{name}.json")
    run(["load", *argv, "--quiet", "--json", path])
    with open(path) as f:
        return json.load(f), "spillway load " + " ".join(argv)


def measure_capacity(args):
    report, _ = simulate(["--mode", "semaphore", "--rate", "10", "--duration", "100ms",
                          "--alloc-kib", str(args.alloc_kib)], args.json_dir, "capacity")
    return report["capacity_per_s"]


def sim_runs(args, capacity):
    """Every simulate run: name -> (mode report, command)."""
    base = ["--mode", "pool-adaptive", "--capacity", f"{capacity:.0f}",
            "--duration", f"{args.duration}s", "--alloc-kib", str(args.alloc_kib)]
    runs = {
        "priorities": ["--scenario", "priorities", *base],
        "step (no priorities)": ["--scenario", "step", "--rate", f"{3 * capacity:.0f}", *base],
        "all normal": ["--scenario", "priorities", "--priority-mix", "normal=1", *base],
        "all low": ["--scenario", "priorities", "--priority-mix", "low=1", *base],
    }
    out = {}
    for name, argv in runs.items():
        slug = name.replace(" ", "-").replace("(", "").replace(")", "")
        report, cmd = simulate(argv, args.json_dir, slug)
        out[name] = (report["modes"][0], cmd)
    return out


def settled_share(mode, row):
    """Goodput over the jobs of `row` whose fate was known at the end of the run."""
    goodput = row["goodput_per_s"] * mode["elapsed_s"]
    settled = row["completed"] + row["shed"] + row.get("expired", 0) + row.get("displaced", 0)
    return goodput / settled if settled else 0.0


def sim_table(runs):
    lines = ["| run | priority | offered/s | goodput/s | goodput / settled | p50 ms | p99 ms "
             "| shed | expired | displaced |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (m, _) in runs.items():
        rows = [("all", m)] + [(p, m["by_priority"][p]) for p in
                               ("critical", "high", "normal", "low") if p in m["by_priority"]]
        for prio, r in rows:
            lines.append(
                f"| {name} | {prio} | {r['offered_per_s']:.0f} | {r['goodput_per_s']:.0f} "
                f"| {settled_share(m, r):.2%} | {r['latency_ms']['p50']:.1f} "
                f"| {r['latency_ms']['p99']:.1f} | {r['shed']} | {r['expired']} "
                f"| {r['displaced']} |")
    return lines


def sim_goals(runs):
    m = runs["priorities"][0]
    step = runs["step (no priorities)"][0]
    crit, low = m["by_priority"]["critical"], m["by_priority"]["low"]
    crit_share = settled_share(m, crit)
    total = m["goodput_per_s"] / step["goodput_per_s"]
    checks = [
        (crit_share >= 0.995, f"critical goodput {crit_share:.2%} of its settled offer "
                              f"(>= 99.5%)"),
        (crit["latency_ms"]["p99"] <= P99_GOAL_MS,
         f"critical p99 {crit['latency_ms']['p99']:.1f} ms (<= 100 ms)"),
        (total >= 0.95, f"total goodput {m['goodput_per_s']:.0f}/s = {total:.1%} of step's "
                        f"pool-adaptive {step['goodput_per_s']:.0f}/s (>= 95%)"),
        (low["goodput_per_s"] > 0, f"low goodput {low['goodput_per_s']:.0f}/s (> 0)"),
    ]
    for one in ("all normal", "all low"):
        g = runs[one][0]["goodput_per_s"]
        ratio = g / step["goodput_per_s"]
        checks.append((abs(ratio - 1) <= 0.05,
                       f"{one}: goodput {g:.0f}/s = {ratio:.1%} of step's (within 5%)"))
    return checks


def http_runs(args):
    """serve --mode pool with a 10 ms handler; its capacity, then 3x that with a mix."""
    url = f"http://127.0.0.1:{PORT}/work"
    serve = [SPILLWAY, "serve", "--mode", "pool", "--addr", f"127.0.0.1:{PORT}",
             "--wait-ms", "10", "--max-workers", str(args.http_workers),
             "--min-workers", str(args.http_workers), "--queue", str(args.http_queue)]
    conns = ["--connections", str(args.http_connections)]
    server = benchlib.Server("spillway pool", serve, PORT)
    try:
        littles = args.http_workers / 0.010
        probe, _ = load([url, "--rate", f"{2 * littles:.0f}", "--duration", "5s",
                         "--warmup", "1s", *conns], args.json_dir, "http-capacity")
        capacity = probe["latency"]["2xx"]["rate"]
        report, cmd = load([url, "--rate", f"{3 * capacity:.0f}", "--duration",
                            f"{args.http_seconds}s", "--warmup", "1s", *conns,
                            "--priority-mix", "critical=0.1,low=0.9"], args.json_dir, "http-mix")
    finally:
        server.stop()
    return capacity, report, "spillway " + " ".join(serve[1:]), cmd


def http_table(capacity, report):
    lines = [f"HTTP capacity measured: {capacity:.0f} 2xx/s; offered {report['offered_rate']:.0f}/s",
             "",
             "| priority | requests | 2xx | 503 | errors | 2xx share | goodput/s | 2xx p50 ms "
             "| 2xx p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for prio, r in sorted(report["by_priority"].items()):
        ok = r["latency"]["2xx"]
        share = ok["count"] / r["requests"] if r["requests"] else 0.0
        lines.append(f"| {prio} | {r['requests']} | {ok['count']} | {r['latency']['503']['count']} "
                     f"| {r['errors']} | {share:.2%} | {r['goodput_per_s']:.0f} "
                     f"| {ok['p50_ms']:.1f} | {ok['p99_ms']:.1f} |")
    return lines


def http_goals(report):
    crit = report["by_priority"]["critical"]
    ok = crit["latency"]["2xx"]
    share = ok["count"] / crit["requests"]
    return [(share >= 0.99, f"critical 2xx {share:.2%} (>= 99%)"),
            (ok["p99_ms"] <= P99_GOAL_MS, f"critical p99 {ok['p99_ms']:.1f} ms (<= 100 ms)")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="target/bench_priorities.md")
    parser.add_argument("--duration", type=int, default=10, help="seconds per simulate run")
    parser.add_argument("--json-dir", default=None)
    parser.add_argument("--http-workers", type=int, default=20,
                        help="serve's workers: its capacity is about this / 10 ms")
    parser.add_argument("--http-queue", type=int, default=40)
    parser.add_argument("--http-connections", type=int, default=500)
    parser.add_argument("--http-seconds", type=int, default=10)
    parser.add_argument("--alloc-kib", type=int, default=16, help="simulate's job memory")
    args = parser.parse_args()
    args.json_dir = args.json_dir or tempfile.mkdtemp(prefix="bench-priorities-")
    build_spillway()
    raise_nofile()
    capacity = measure_capacity(args)
    runs = sim_runs(args, capacity)
    http_capacity, http_report, serve_cmd, load_cmd = http_runs(args)
    checks = sim_goals(runs) + http_goals(http_report)
    out = [f"Machine capacity for simulate's job (20 ms wait, {args.alloc_kib} KiB): "
           f"{capacity:.0f} jobs/s (offered 3x that).", ""]
    out += sim_table(runs) + ["", "Commands:", ""]
    out += [f"    {cmd}" for _, cmd in runs.values()]
    out += ["", *http_table(http_capacity, http_report), "", "Commands:", "",
            f"    {serve_cmd}", f"    {load_cmd}", "", "Goals:", ""]
    out += [f"- [{'x' if ok else ' '}] {text}" for ok, text in checks]
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    print(f"JSON reports in {args.json_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
