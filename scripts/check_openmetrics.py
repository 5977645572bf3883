#!/usr/bin/env python3
"""Parses an OpenMetrics exposition from stdin with the reference parser (prometheus_client) and
fails on any error: a family declared twice ("Clashing name"), a sample outside its family, a
missing `# EOF`, or a negative gauge. Prints the families it read."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

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
print(f"openmetrics: {len(families)} families, pools {sorted(p for p in pools if p)}: valid")
