#!/usr/bin/env python3
"""Fault injection under load: `spillway serve` in pool mode at 5x overload for 60 s, without
faults and then with 1% of jobs panicking, 0.1% never finishing and 1% allocating 10x; checks
that the healthy jobs' goodput (200s per second) with faults is at least 90% of the no-fault
run's, that the books balance in /metrics after each run, and that RSS does not grow (by more than
10% after the first third). Prints a Markdown summary.

    python3 scripts/faults.py [--seconds 60] [--out faults.md]

A job that never finishes holds its worker until its client gives up (`spillway load
--timeout 2s`) and the pool cancels it: the summary shows the cancellations and the busy
workers. Everything runs on 127.0.0.1. Builds the release binary first.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import soak  # noqa: E402


def summary(name, seconds, samples, report, final):
    submitted, accounted, ended = soak.books(final)
    outcomes = {k.split('outcome="')[1].rstrip('"}'): int(v) for k, v in ended.items()}
    ok = report["statuses"].get("200", 0) / seconds
    rss = [s["rss_mib"] for s in samples]
    row = (f"| {name} | {ok:.0f} | {report['statuses']} | {outcomes} | "
           f"{submitted:.0f} = {accounted:.0f} | {min(rss, default=0):.0f}-{max(rss, default=0):.0f} | "
           f"{max((s['busy'] for s in samples), default=0):.0f} |")
    return ok, row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--out", default="faults.md")
    args = p.parse_args()
    benchlib.build_spillway()
    benchlib.raise_nofile()
    lines = [f"# Faults at {soak.OVERLOAD}x overload for {args.seconds} s "
             f"({soak.CAPACITY * soak.OVERLOAD:.0f} requests/s offered to "
             f"{soak.CAPACITY:.0f}/s of capacity)", "",
             "| run | goodput (200/s) | statuses | pool outcomes | books: submitted = ended "
             "or inside | RSS (MiB) | most busy workers |",
             "|---|---:|---|---|---|---|---:|"]
    checks = {}
    goodput = {}
    for name, faults in [("no faults", False), ("faults " + " ".join(soak.FAULTS), True)]:
        samples, report, final = soak.run(args.seconds, faults)
        goodput[faults], row = summary(name, args.seconds, samples, report, final)
        lines.append(row)
        submitted, accounted, _ = soak.books(final)
        checks[f"{name}: books balance"] = submitted == accounted
        after = [s["rss_mib"] for s in samples if s["t"] >= args.seconds // 3]
        # One-sided: a leak grows; the allocator giving memory back is not one.
        grown = max(after, default=0) <= 1.10 * after[0] if after else True
        checks[f"{name}: RSS grows by at most 10% after {args.seconds // 3}s "
               f"({' '.join(f'{v:.0f}' for v in after)} MiB)"] = grown
    ratio = goodput[True] / goodput[False] if goodput[False] else 0.0
    checks[f"healthy goodput with faults is {ratio:.0%} of the no-fault run's (>= 90%)"] = (
        ratio >= 0.9)
    lines.append("")
    soak.finish(lines, checks, args.out)


if __name__ == "__main__":
    main()
