#!/usr/bin/env python3
"""Draws BENCHMARKS.md's figures from a bench/compare.py results file, as SVG (standard library only):

  1. latency by rate: direct p50/p99 and through-aigw p50/p99 (medians of the runs), with every run's aigw p99 as
     a dot, so the spread shows;
  2. CPU per call by rate: the gateway and the do-nothing upstream, every run as a dot, the median as a line.

Usage: python3 bench/plot.py RESULTS.json OUT_PREFIX   (writes OUT_PREFIX-latency.svg and OUT_PREFIX-cpu.svg)
bench/compare.py calls it at the end of a run.
"""

import json
import math
import sys
from pathlib import Path

W, H, L, R, T, B = 760, 380, 70, 170, 40, 50
COLORS = {"direct p50": "#1f77b4", "direct p99": "#6baed6", "aigw p50": "#d62728", "aigw p99": "#ff9896",
          "gateway": "#d62728", "upstream": "#1f77b4"}


def nice_max(v):
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def chart(title, xlabel, ylabel, xs, lines, dots=(), log_y=False):
    """lines: {name: [y per x]}; dots: [(name, x, y)]. Returns SVG text."""
    ys = [y for ys_ in lines.values() for y in ys_ if y is not None] + [d[2] for d in dots]
    if log_y:
        lo = 10 ** math.floor(math.log10(max(min(ys), 1e-9)))
        hi = 10 ** math.ceil(math.log10(max(ys)))
        fy = lambda y: T + (H - T - B) * (1 - (math.log10(y) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))  # noqa: E731
        ticks = [lo * 10 ** i for i in range(int(round(math.log10(hi / lo))) + 1)]
    else:
        hi = nice_max(max(ys) * 1.05)
        fy = lambda y: T + (H - T - B) * (1 - y / hi)  # noqa: E731
        ticks = [hi * i / 5 for i in range(6)]
    fx = lambda i: L + (W - L - R) * (i / max(1, len(xs) - 1))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    for t in ticks:
        y = fy(t)
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{t:g}" if t < 10_000 else f"{t / 1000:g}k"
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{fx(i):.1f}" y="{H - B + 18}" text-anchor="middle">{x:g}</text>')
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{H - B}" y2="{H - B}" stroke="#333"/>')
    out.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{H - B}" stroke="#333"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">{ylabel}</text>')
    for name, x, y in dots:
        out.append(f'<circle cx="{fx(xs.index(x)):.1f}" cy="{fy(y):.1f}" r="2.5" fill="{COLORS[name]}" '
                   'fill-opacity="0.6"/>')
    for n, (name, values) in enumerate(lines.items()):
        pts = " ".join(f"{fx(i):.1f},{fy(v):.1f}" for i, v in enumerate(values) if v is not None)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[name]}" stroke-width="2"/>')
        ly = T + 14 + 18 * n
        out.append(f'<line x1="{W - R + 14}" x2="{W - R + 34}" y1="{ly}" y2="{ly}" stroke="{COLORS[name]}" '
                   'stroke-width="2"/>')
        out.append(f'<text x="{W - R + 40}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    prefix = sys.argv[2]
    sweep = results["unary_sweep"]
    rates = [p["rate"] for p in sweep]
    ms = lambda us: us / 1000  # noqa: E731
    latency = chart(
        "Unary latency by arrival rate (medians of 3 runs; dots: each run's aigw p99)", "calls per second",
        "latency, ms (log scale)", rates,
        {"direct p50": [ms(p["direct_p50_us"]) for p in sweep], "direct p99": [ms(p["direct_p99_us"]) for p in sweep],
         "aigw p50": [ms(p["aigw_p50_us"]) for p in sweep], "aigw p99": [ms(p["aigw_p99_us"]) for p in sweep]},
        dots=[("aigw p99", p["rate"], ms(v)) for p in sweep for v in p["per_run"]["aigw_p99_us"]],
        log_y=True)
    cpu = chart(
        "CPU per unary call by arrival rate (lines: medians; dots: each run)", "calls per second",
        "CPU µs per call", rates,
        {"gateway": [p["gateway_cpu_us_per_call"] for p in sweep],
         "upstream": [p["upstream_cpu_us_per_call"] for p in sweep]},
        dots=[(name, p["rate"], v) for p in sweep
              for name, key in (("gateway", "gateway_cpu_us_per_call"), ("upstream", "upstream_cpu_us_per_call"))
              for v in p["per_run"][key]])
    Path(f"{prefix}-latency.svg").write_text(latency)
    Path(f"{prefix}-cpu.svg").write_text(cpu)
    print(f"written: {prefix}-latency.svg, {prefix}-cpu.svg")


if __name__ == "__main__":
    main()
