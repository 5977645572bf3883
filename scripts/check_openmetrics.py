#!/usr/bin/env python3
"""Parses an OpenMetrics exposition from stdin with the reference parser (prometheus_client) and
fails on any error: a family declared twice ("Clashing name"), a sample outside its family, a
missing `# EOF`, or a negative gauge. Then checks the accounting identity of each pool:
submitted == completed + panicked + cancelled + expired + displaced + timed_out + abandoned
+ queued + busy, every outcome present; and per priority, for a pool with nothing in flight,
submitted == the sum of its outcomes. Prints the families it read."""
import sys
from collections import defaultdict

from prometheus_client.openmetrics.parser import text_string_to_metric_families

OUTCOMES = {"completed", "panicked", "cancelled", "expired", "displaced", "timed_out", "abandoned"}

text = sys.stdin.read()
families = list(text_string_to_metric_families(text))
names = [f.name for f in families]
if len(names) != len(set(names)):
    sys.exit(f"a family is declared twice: {names}")
if not families:
    sys.exit("no metric family in the exposition")
for family in families:
    for sample in family.samples:
        if family.type == "gauge" and sample.value < 0:
            sys.exit(f"negative gauge: {sample}")
pools = {s.labels.get("pool") for f in families for s in f.samples}


def values(family_name, *keys):
    """The samples of a family, keyed by the labels named (pool first); empty if absent."""
    out = defaultdict(float)
    for family in families:
        if family.name == family_name:
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                out[tuple(sample.labels.get(k) for k in keys)] += sample.value
    return out


submitted = values("spillway_jobs_submitted", "pool")
ended = values("spillway_jobs_ended", "pool", "outcome")
in_flight = defaultdict(float)
for gauge in ("spillway_queue_depth", "spillway_workers_busy"):
    for key, value in values(gauge, "pool").items():
        in_flight[key] += value
prio_submitted = values("spillway_priority_jobs_submitted", "pool", "priority")
prio_ended = values("spillway_priority_jobs_ended", "pool", "priority", "outcome")
for (pool,), count in submitted.items():
    outcomes = {o for (p, o) in ended if p == pool}
    if outcomes != OUTCOMES:
        sys.exit(f"pool {pool}: outcomes {sorted(outcomes)}, expected {sorted(OUTCOMES)}")
    total = sum(v for (p, _), v in ended.items() if p == pool) + in_flight[(pool,)]
    if total != count:
        sys.exit(f"pool {pool}: submitted {count} but ended + queued + busy = {total}")
    if in_flight[(pool,)] == 0:
        for (p, priority), n in prio_submitted.items():
            if p != pool:
                continue
            got = sum(v for (pp, pr, _), v in prio_ended.items() if (pp, pr) == (pool, priority))
            if got != n:
                sys.exit(f"pool {pool}, priority {priority}: submitted {n} but ended {got}")
print(f"openmetrics: {len(families)} families, pools {sorted(p for p in pools if p)}: valid, "
      f"accounting balanced")
