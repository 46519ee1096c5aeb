"""`image-service loadtest --report FILE.html`: one self-contained page (inline SVG and CSS, no
script, nothing fetched) with the run's throughput and each step's latency over time, and the
percentiles per step."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_service.client.loadtest import Results

WIDTH, HEIGHT, MARGIN = 720, 220, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _chart(title: str, unit: str, series: dict[str, list[tuple[float, float]]], span: float) -> str:
    """A line chart of (second, value) series, one colour each, with its axes and legend."""
    highest = max((value for points in series.values() for _, value in points), default=0.0)
    # A round top for the axis: the next 1, 2 or 5 times a power of ten.
    power = 10 ** math.floor(math.log10(highest)) if highest > 0 else 1.0
    top = next(step * power for step in (1, 2, 5, 10) if step * power >= highest)
    span = max(span, 1.0)

    def x(second: float) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * second / span

    def y(value: float) -> float:
        return HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * value / top

    lines = [
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" class="axis"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" class="axis"/>',
        f'<text x="{MARGIN - 4}" y="{MARGIN + 4}" text-anchor="end">{top:g}</text>',
        f'<text x="{MARGIN - 4}" y="{HEIGHT - MARGIN}" text-anchor="end">0</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - MARGIN + 16}" text-anchor="end">'
        f"{span:.0f} s</text>",
        f'<text x="{MARGIN}" y="{MARGIN - 10}">{html.escape(unit)}</text>',
    ]
    for number, (name, points) in enumerate(series.items()):
        colour = COLOURS[number % len(COLOURS)]
        path = " ".join(f"{x(second):.1f},{y(value):.1f}" for second, value in points)
        lines.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'data-series="{html.escape(name)}"/>'
        )
        lines.append(
            f'<text x="{WIDTH - MARGIN + 4}" y="{MARGIN + 14 * number}" style="fill: {colour}">'
            f"{html.escape(name)}</text>"
        )
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<svg viewBox="0 0 {WIDTH + 100} {HEIGHT}" width="{WIDTH + 100}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">{"".join(lines)}</svg>'
    )


def html_report(results: Results, summary: dict[str, Any]) -> str:
    span = math.ceil(summary["seconds"])
    per_second: defaultdict[int, int] = defaultdict(int)
    for ended in results.lifecycles_ended:
        per_second[int(ended)] += 1
    throughput = {"lifecycles/s": [(s + 0.5, float(per_second[s])) for s in range(span)]}
    by_step: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for started, step, took in results.steps_over_time:
        by_step[step][int(started)].append(1000 * took)
    latency = {
        step: [(second + 0.5, _median(values)) for second, values in sorted(buckets.items())]
        for step, buckets in by_step.items()
    }
    rows = "".join(
        f"<tr><td>{html.escape(step)}</td><td>{figures['count']}</td><td>{figures['p50_ms']}</td>"
        f"<td>{figures['p95_ms']}</td><td>{figures['p99_ms']}</td></tr>"
        for step, figures in summary["steps"].items()
    )
    errors = "".join(
        f"<li>{html.escape(step)} {html.escape(status)}: {count}</li>"
        for step, by_status in summary["errors"].items()
        for status, count in by_status.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>image-service loadtest</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 12px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} tr:nth-child(even) {{ background: #f4f4f4; }}
svg text {{ font-size: 11px; fill: #555; }} .axis {{ stroke: #999; }}
</style></head><body>
<h1>image-service loadtest</h1>
<p id="summary">{summary["lifecycles"]} lifecycles in {summary["seconds"]} s:
{summary["lifecycles_per_second"]} lifecycles/s, {summary["requests_per_second"]} requests/s;
{summary["error_count"]} errors.</p>
{_chart("Throughput over time", "lifecycles per second", throughput, span)}
{_chart("Latency over time (median per second)", "ms", latency, span)}
<h2>Percentiles per step</h2>
<table id="steps"><tr><th>step</th><th>count</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>
{rows}</table>
<h2>Errors</h2><ul id="errors">{errors or "<li>none</li>"}</ul>
</body></html>
"""
