#!/usr/bin/env python3
"""Pools the interleaved slices of scripts/bench.sh into one row per scenario, database and
connection count, and prints the table.

Input: a TSV of slices (scenario, db, conns, round, requests, seconds, rps, p50, p99, non2xx,
errors, cpu_ticks, quantile_file) and CLK_TCK as the second argument.

- requests/s: all requests of the scenario over all its seconds.
- p50/p99: of the pooled latency distribution: each slice contributes its 1000 quantiles, each
  weighted by a thousandth of the slice's requests.
- ratio: requests/s over /healthz's at the same database and connection count.
- CPU µs/req: the server's user+system CPU time per request (from /proc/PID/stat), which other
  load on the machine disturbs far less than throughput does; cpu ratio is /healthz's CPU per
  request over the scenario's, i.e. the throughput ratio to expect when the server is CPU-bound.
"""
import sys
from collections import OrderedDict

SCENARIOS = ["healthz", "valid", "verify", "malformed", "unknown", "miss"]


def pooled_percentile(samples, p):
    samples.sort()
    total = sum(w for _, w in samples)
    target = total * p / 100
    seen = 0.0
    for value, weight in samples:
        seen += weight
        if seen >= target:
            return value
    return samples[-1][0] if samples else float("nan")


def main(path, clk_tck):
    groups = OrderedDict()
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        key = (f[1], int(f[2]), f[0])
        g = groups.setdefault(key, {"requests": 0, "seconds": 0.0, "non2xx": 0, "errors": 0,
                                    "ticks": 0, "samples": [], "slices": 0})
        requests = int(f[4])
        g["requests"] += requests
        g["seconds"] += float(f[5])
        g["non2xx"] += int(f[9])
        g["errors"] += int(f[10])
        g["ticks"] += int(f[11])
        g["slices"] += 1
        weight = requests / 1000
        with open(f[12]) as q:
            g["samples"].extend((float(v), weight) for v in q.read().split())

    header = ("scenario", "db", "conns", "requests/s", "p50 ms", "p99 ms", "ratio",
              "CPU µs/req", "cpu ratio", "requests", "non-2xx", "errors")
    print("| " + " | ".join(header) + " |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    order = sorted(groups, key=lambda k: (k[0] != "sqlite", -k[1], SCENARIOS.index(k[2])))
    for db, conns, scenario in order:
        g = groups[(db, conns, scenario)]
        base = groups.get((db, conns, "healthz"))
        rps = g["requests"] / g["seconds"]
        base_rps = base["requests"] / base["seconds"] if base else float("nan")
        cpu_us = g["ticks"] / clk_tck * 1e6 / g["requests"]
        base_cpu = base["ticks"] / clk_tck * 1e6 / base["requests"] if base else float("nan")
        print(f"| {scenario} | {db} | {conns} | {rps:.0f} "
              f"| {pooled_percentile(g['samples'], 50):.3f} "
              f"| {pooled_percentile(g['samples'], 99):.3f} "
              f"| {rps / base_rps:.2f} | {cpu_us:.1f} | {base_cpu / cpu_us:.2f} "
              f"| {g['requests']} | {g['non2xx']} | {g['errors']} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
