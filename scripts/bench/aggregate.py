#!/usr/bin/env python3
"""Pools the interleaved slices of scripts/bench.sh into one row per scenario, database and
connection count, and prints the table.

Input: a TSV of slices (scenario, db, conns, round, requests, seconds, rps, p50, p99, non2xx,
errors, cpu_ticks, quantile_file) and CLK_TCK as the second argument.

- requests/s: all requests of the scenario over all its seconds.
- p50/p99: of the pooled latency distribution: each slice contributes its 1000 quantiles, each
  weighted by a thousandth of the slice's requests.
- × base: requests/s over the baseline's at the same database and connection count; the
  baseline is plain axum ("hello", examples/hello.rs) when the run has it, else /healthz.
  p99 × base likewise for the p99 latency.
- CPU µs/req: the server's user+system CPU time per request (from /proc/PID/stat), which other
  load on the machine disturbs far less than throughput does; cpu ratio is /healthz's CPU per
  request over the scenario's, i.e. the throughput ratio to expect when the server is CPU-bound.
"""
import sys
from collections import OrderedDict

SCENARIOS = ["hello", "healthz", "valid", "verify", "policy", "limited", "malformed", "unknown", "miss"]
# The speed goals (docs/dev/performance.md), checked when the run has the plain axum baseline.
GOALS = [("healthz", "requests/s", 0.90), ("valid", "requests/s", 0.85),
         ("policy", "requests/s", 0.80)]
P99_GOAL = 1.5


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

    for g in groups.values():
        g["rps"] = g["requests"] / g["seconds"] if g["seconds"] else float("nan")
        g["p50"] = pooled_percentile(g["samples"], 50)
        g["p99"] = pooled_percentile(g["samples"], 99)
        g["cpu_us"] = g["ticks"] / clk_tck * 1e6 / g["requests"] if g["requests"] else float("nan")
    with_hello = any(k[2] == "hello" for k in groups)
    base_name = "hello" if with_hello else "healthz"
    base_label = "axum" if with_hello else "healthz"
    header = ("scenario", "db", "conns", "requests/s", "p50 ms", "p99 ms", f"× {base_label}",
              f"p99 × {base_label}", "CPU µs/req", f"cpu × {base_label}", "requests", "non-2xx",
              "errors")
    print("| " + " | ".join(header) + " |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    order = sorted(groups, key=lambda k: (k[0] != "sqlite", -k[1], SCENARIOS.index(k[2])))
    nan = {"rps": float("nan"), "p99": float("nan"), "cpu_us": float("nan")}
    for db, conns, scenario in order:
        g = groups[(db, conns, scenario)]
        base = groups.get((db, conns, base_name), nan)
        print(f"| {scenario} | {db} | {conns} | {g['rps']:.0f} | {g['p50']:.3f} | {g['p99']:.3f} "
              f"| {g['rps'] / base['rps']:.2f} | {g['p99'] / base['p99']:.2f} "
              f"| {g['cpu_us']:.1f} | {base['cpu_us'] / g['cpu_us']:.2f} "
              f"| {g['requests']} | {g['non2xx']} | {g['errors']} |")
    if not with_hello:
        return
    print()
    print("Goals, each against plain axum at the same database and connection count:")
    for db, conns in sorted({(k[0], k[1]) for k in groups}, key=lambda k: (k[0] != "sqlite", -k[1])):
        base = groups.get((db, conns, "hello"))
        if base is None:
            continue
        for scenario, _, goal in GOALS:
            g = groups.get((db, conns, scenario))
            if g:
                ratio = g["rps"] / base["rps"]
                print(f"- {db} c={conns}: {scenario} requests/s {ratio:.2f}× plain axum "
                      f"(goal ≥ {goal:.2f}×): {'met' if ratio >= goal else 'NOT met'}")
        if conns >= 64:
            for scenario in ("healthz", "valid"):
                g = groups.get((db, conns, scenario))
                if g:
                    ratio = g["p99"] / base["p99"]
                    print(f"- {db} c={conns}: {scenario} p99 {g['p99']:.3f} ms = {ratio:.2f}× "
                          f"plain axum's {base['p99']:.3f} ms (goal ≤ {P99_GOAL}×): "
                          f"{'met' if ratio <= P99_GOAL else 'NOT met'}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
