"""Server-rendered SVG charts, pure: credits over time, stacked by one dimension.

No JavaScript and nothing fetched: the chart is markup with a ``<title>`` and ``<desc>`` for
screen readers, a ``<title>`` on every bar segment for pointer users, and the same numbers in a
table beside it (see the dashboard). Colors are the Okabe–Ito palette, distinguishable with the
common color-vision deficiencies; series beyond ``SERIES_MAX`` are summed as "other".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from creditgate.ledger.credits import format_amount

WIDTH_PX: Final = 720
HEIGHT_PX: Final = 240
MARGIN_LEFT_PX: Final = 64
MARGIN_BOTTOM_PX: Final = 28
MARGIN_TOP_PX: Final = 10
SERIES_MAX: Final = 6
BUCKETS_MAX: Final = 400
PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#555555")
OTHER: Final = "other"
NONE_LABEL: Final = "(none)"
EMPTY_AXIS_TOP: Final = 1_000_000  # an empty chart still reads 0 to 1 credit


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    values: tuple[int, ...]  # micro-credits per bucket

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    buckets: tuple[str, ...]  # labels, oldest first
    series: tuple[Series, ...]

    @property
    def totals(self) -> tuple[int, ...]:
        return tuple(sum(s.values[i] for s in self.series) for i in range(len(self.buckets)))


def build(title: str, buckets: Sequence[str], points: Sequence[tuple[str, str, int]]) -> Chart:
    """A chart from ``(bucket label, series name, micro-credits)`` points; the largest series
    first, at most ``SERIES_MAX`` named ones."""
    assert len(buckets) <= BUCKETS_MAX
    index = {label: position for position, label in enumerate(buckets)}
    sums: dict[str, list[int]] = {}
    for bucket, name, credits in points:
        if bucket in index:
            sums.setdefault(name or NONE_LABEL, [0] * len(buckets))[index[bucket]] += credits
    ranked = sorted(sums.items(), key=lambda item: (-sum(item[1]), item[0]))
    kept, rest = ranked[:SERIES_MAX], ranked[SERIES_MAX:]
    if rest:
        other = [sum(values[i] for _, values in rest) for i in range(len(buckets))]
        kept.append((OTHER, other))
    series = tuple(Series(name, PALETTE[position % len(PALETTE)], tuple(values))
                   for position, (name, values) in enumerate(kept))
    return Chart(title, tuple(buckets), series)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n micro-credits at or above ``value`` (axis top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def render_svg(chart: Chart, chart_id: str) -> str:
    totals = chart.totals
    top = _nice_ceiling(max(totals, default=0) or EMPTY_AXIS_TOP)
    plot_w = WIDTH_PX - MARGIN_LEFT_PX - 8
    plot_h = HEIGHT_PX - MARGIN_BOTTOM_PX - MARGIN_TOP_PX
    count = max(1, len(chart.buckets))
    slot = plot_w / count
    bar_w = max(1.0, slot * 0.8)
    total_text = format_amount(sum(totals))
    names = ", ".join(escape(s.name) for s in chart.series) or "nothing"
    parts = [(f'<svg class="chart" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" role="img" '
              f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">'),
             f'<title id="{chart_id}-title">{escape(chart.title)}</title>',
             (f'<desc id="{chart_id}-desc">{escape(chart.title)}: {total_text} credits in '
              f'{len(chart.buckets)} periods, by {names}.</desc>')]
    baseline = MARGIN_TOP_PX + plot_h
    for fraction in (0, 1, 2, 3, 4):
        y = baseline - plot_h * fraction / 4
        value = top * fraction // 4
        parts.append(f'<line x1="{MARGIN_LEFT_PX}" x2="{WIDTH_PX - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{MARGIN_LEFT_PX - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                     f'{format_amount(value)}</text>')
    for position, label in enumerate(chart.buckets):
        x = MARGIN_LEFT_PX + slot * position + (slot - bar_w) / 2
        stacked = 0
        for series in chart.series:
            value = series.values[position]
            if value <= 0:
                continue
            y_top = baseline - plot_h * (stacked + value) / top
            height = plot_h * value / top
            stacked += value
            parts.append(f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" height="{max(height, 0.5):.1f}" '
                         f'fill="{series.color}"><title>{escape(label)} {escape(series.name)}: '
                         f'{format_amount(value)} credits</title></rect>')
    for position in _label_positions(len(chart.buckets)):
        x = MARGIN_LEFT_PX + slot * position + slot / 2
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT_PX - 8}" text-anchor="middle" class="axis">'
                     f'{escape(chart.buckets[position])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _label_positions(count: int, labels_max: int = 6) -> list[int]:
    if count <= labels_max:
        return list(range(count))
    step = -(-count // labels_max)
    return list(range(0, count, step))
