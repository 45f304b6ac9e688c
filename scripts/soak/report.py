#!/usr/bin/env python3
"""Reads soak samples (TSV: seconds rss_kb fds pool cache) and says whether each series is flat:
the mean of the last third within 10% of the mean of the middle third (the first third is
warm-up). Prints a Markdown table; exits 1 if any series is not flat.

  report.py SAMPLES_TSV
"""
import sys

TOLERANCE = 0.10
SERIES = ["rss_kb", "open_fds", "pool_connections", "cache_entries"]


def main(path):
    rows = [line.split("\t") for line in open(path).read().splitlines()[1:] if line.strip()]
    if len(rows) < 6:
        sys.exit(f"only {len(rows)} samples; run longer")
    third = len(rows) // 3
    middle, last = rows[third : 2 * third], rows[len(rows) - third :]
    print(f"{len(rows)} samples; middle third: {middle[0][0]}–{middle[-1][0]} s, last third: {last[0][0]}–{last[-1][0]} s\n")
    print("| series | min | max | middle-third mean | last-third mean | change | flat |")
    print("|---|---|---|---|---|---|---|")
    all_flat = True
    for column, name in enumerate(SERIES, start=1):
        values = [float(row[column]) for row in rows]
        mid = sum(float(r[column]) for r in middle) / len(middle)
        end = sum(float(r[column]) for r in last) / len(last)
        change = (end - mid) / mid if mid else (0.0 if end == mid else float("inf"))
        flat = abs(change) <= TOLERANCE
        all_flat &= flat
        print(f"| {name} | {min(values):g} | {max(values):g} | {mid:.1f} | {end:.1f} | {change:+.1%} | {'yes' if flat else 'NO'} |")
    sys.exit(0 if all_flat else 1)


if __name__ == "__main__":
    main(sys.argv[1])
