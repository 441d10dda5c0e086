"""The overview's chart as geometry for an inline SVG, drawn on the server: no JavaScript,
no chart library, and nothing in it but numbers and fixed text."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Final

from .queries import Chart

__all__ = ["Bar", "ChartView", "chart_view"]

_LEFT: Final = 34  # room for the y axis labels
_BOTTOM: Final = 18  # room for the x axis labels
_TOP: Final = 6


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One minute: the failed part drawn on top of the done part."""

    x: float
    width: float
    done_y: float
    done_h: float
    failed_y: float
    failed_h: float
    title: str


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class ChartView:
    """What the template draws: bars, axis ticks, and a sentence saying the same."""

    width: int
    height: int
    plot_left: int
    plot_bottom: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total_done: int
    total_failed: int
    summary: str


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)


def chart_view(chart: Chart, width: int = 1000, height: int = 170) -> ChartView:
    """Lay out ``chart`` in a ``width`` × ``height`` box (SVG user units)."""
    minutes = len(chart.done)
    plot_w = width - _LEFT - 4
    plot_h = height - _TOP - _BOTTOM
    top = _nice_max(max((d + f for d, f in zip(chart.done, chart.failed, strict=True)),
                        default=0))
    step = plot_w / max(minutes, 1)
    gap = min(2.0, step * 0.2)
    bottom = _TOP + plot_h
    bars = []
    for i, (done, failed) in enumerate(zip(chart.done, chart.failed, strict=True)):
        done_h = plot_h * done / top
        failed_h = plot_h * failed / top
        at = chart.start + timedelta(minutes=i)
        bars.append(Bar(
            x=round(_LEFT + i * step + gap / 2, 2),
            width=round(step - gap, 2),
            done_y=round(bottom - done_h, 2),
            done_h=round(done_h, 2),
            failed_y=round(bottom - done_h - failed_h, 2),
            failed_h=round(failed_h, 2),
            title=f"{at:%H:%M} UTC: {done} done, {failed} failed",
        ))
    y_ticks = [Tick(round(bottom - plot_h * v / top, 2), str(v))
               for v in sorted({0, top // 2, top})]
    x_ticks = []
    for back in (60, 45, 30, 15, 0):
        i = minutes - back
        if 0 <= i <= minutes:
            x_ticks.append(Tick(round(_LEFT + i * step, 2), "now" if back == 0 else
                                f"−{back} min"))
    total_done, total_failed = sum(chart.done), sum(chart.failed)
    summary = (f"In the last {minutes} minutes: {total_done} jobs done (Completed or Skipped) "
               f"and {total_failed} Failed")
    if not chart.complete:
        summary += f" (from the newest {chart.scanned} finished jobs only)"
    return ChartView(width, height, _LEFT, bottom, bars, y_ticks, x_ticks, total_done,
                     total_failed, summary + ".")
