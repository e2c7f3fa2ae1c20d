"""The review report as one self-contained HTML page, with inline SVG charts (R17).

No script, font, stylesheet or image is loaded from anywhere: the page carries a Content
Security Policy that forbids every fetch, its style is inline, and each chart is an SVG drawn
here from the report's tables. Every text is escaped. The same report renders to the same
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from domain.rules import RULE_CITED, RULES_DOCUMENT, rule_link
from projections.review_report import RULES_NOTE, SECTIONS

WIDTH, PLOT_HEIGHT = 780, 220
LEFT, RIGHT, TOP = 56, 16, 12
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#8c564b",
)
DASHES = ("none", "8 4", "2 3", "12 3 3 3")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

SECTION_TITLES = {
    "participation": "Participation (R1, R2, R4)",
    "freshness": "Freshness of entries (R5)",
    "responsiveness": "Responsiveness",
    "use": "Use of the directory (R7-R11)",
    "capacity": "Capacity building (R16)",
}


def cited(text: str) -> str:
    """``text`` escaped, with each rule it cites linked to its definition in docs/domain.md
    (a repository link: the page loads nothing, a reader follows it in the repository)."""
    return RULE_CITED.sub(
        lambda m: f'<a href="{escape(rule_link(int(m.group(1))))}">{m.group(0)}</a>', escape(text)
    )


@dataclass(frozen=True)
class Chart:
    """Which table a chart draws: its x column and series columns; ``kind`` is ``line``,
    ``stacked`` or ``grouped``."""

    section: str
    table: str
    kind: str
    series: tuple[str, ...] | None = None  # None: every column after the first but "total"


CHARTS = (
    Chart("participation", "over_time", "line", ("registered", "diplomatic", "technical", "both")),
    Chart("participation", "incident_type_coverage", "grouped"),
    Chart("freshness", "annual_updates", "grouped"),
    Chart("freshness", "late_notice_delays", "grouped"),
    Chart(
        "responsiveness",
        "checks",
        "stacked",
        ("answered_in_time", "answered_late", "no_answer", "awaiting"),
    ),
    Chart("responsiveness", "check_answer_times", "grouped"),
    Chart("responsiveness", "notification_times", "grouped"),
    Chart("use", "notifications_per_month", "stacked"),
    Chart("use", "consents", "grouped"),
    Chart("capacity", "needs_by_category", "stacked"),
    Chart("capacity", "time_to_match", "grouped"),
)


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    step = 1.0
    while step * 10 < value:
        step *= 10
    for multiple in (1, 2, 2.5, 5, 10):
        if value <= step * multiple:
            return step * multiple
    return step * 10  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class _Frame:
    """A chart's drawing area: x labels are turned when they would collide, and the space
    below the plot grows to fit them."""

    labels: tuple[str, ...]

    @property
    def rotate(self) -> bool:
        slot = (WIDTH - LEFT - RIGHT) / max(len(self.labels), 1)
        return max((len(lb) for lb in self.labels), default=0) * 6.5 > slot

    @property
    def bottom(self) -> float:
        longest = max((len(lb) for lb in self.labels), default=0)
        return 24 + (longest * 6.2 * 0.5736 if self.rotate else 0)  # sin 35 degrees

    @property
    def height(self) -> float:
        return TOP + PLOT_HEIGHT + self.bottom

    @property
    def base(self) -> float:
        """The y of the x axis."""
        return TOP + PLOT_HEIGHT

    def y(self, value: float, top: float) -> float:
        return self.base - PLOT_HEIGHT * value / top


def _axes(frame: _Frame, top: float) -> list[str]:
    """Horizontal grid lines and y labels from 0 to ``top``."""
    parts = []
    for i in range(5):
        value = top * i / 4
        y = frame.y(value, top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{_num(y)}" x2="{WIDTH - RIGHT}" y2="{_num(y)}"/>'
            f'<text class="ylabel" x="{LEFT - 6}" y="{_num(y + 4)}">{_num(value)}</text>'
        )
    return parts


def _legend(names: list[str], line: bool) -> str:
    """An HTML legend (it wraps however many series there are)."""
    items = "".join(
        f'<li><span class="swatch{" line" if line else ""}" '
        f'style="background:{PALETTE[i % len(PALETTE)]}"></span>{escape(name)}</li>'
        for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def _x_labels(frame: _Frame, centres: list[float]) -> list[str]:
    parts = []
    y = _num(frame.base + 14)
    for label, x in zip(frame.labels, centres, strict=True):
        if frame.rotate:
            parts.append(
                f'<text class="xlabel rot" x="{_num(x)}" y="{y}" '
                f'transform="rotate(-35 {_num(x)} {y})">{escape(label)}</text>'
            )
        else:
            parts.append(f'<text class="xlabel" x="{_num(x)}" y="{y}">{escape(label)}</text>')
    return parts


def _svg(frame: _Frame, title: str, body: list[str]) -> str:
    height = _num(frame.height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">'
        + "".join(body)
        + "</svg>"
    )


def _bars(frame: _Frame, series: dict[str, list[float]], stacked: bool) -> tuple[list[str], int]:
    names, labels = list(series), frame.labels
    totals = [sum(series[n][i] for n in names) for i in range(len(labels))]
    top = _nice_max(max(totals if stacked else [v for n in names for v in series[n]], default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    body = _axes(frame, top)
    marks = 0
    centres = []
    for i in range(len(labels)):
        x0 = LEFT + slot * i + slot * 0.15
        width = slot * 0.7
        centres.append(LEFT + slot * (i + 0.5))
        base = 0.0
        for j, name in enumerate(names):
            value = series[name][i]
            colour = PALETTE[j % len(PALETTE)]
            if stacked:
                x, w, bottom = x0, width, base
                base += value
            else:
                w = width / len(names)
                x, bottom = x0 + w * j, 0.0
            if value <= 0:
                continue
            y = frame.y(bottom + value, top)
            h = frame.y(bottom, top) - y
            body.append(
                f'<rect class="mark" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" '
                f'height="{_num(h)}" fill="{colour}"><title>{escape(labels[i])}, '
                f"{escape(name)}: {_num(value)}</title></rect>"
            )
            marks += 1
    body.extend(_x_labels(frame, centres))
    return body, marks


def _lines(frame: _Frame, series: dict[str, list[float]]) -> tuple[list[str], int]:
    names, labels = list(series), frame.labels
    top = _nice_max(max((v for n in names for v in series[n]), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    step = plot_w / max(len(labels) - 1, 1)
    xs = [LEFT + step * i if len(labels) > 1 else LEFT + plot_w / 2 for i in range(len(labels))]
    body = _axes(frame, top)
    marks = 0
    for j, name in enumerate(names):
        colour = PALETTE[j % len(PALETTE)]
        points = [(x, frame.y(v, top)) for x, v in zip(xs, series[name], strict=True)]
        path = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
        body.append(
            f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{DASHES[j % len(DASHES)]}" points="{path}"/>'
        )
        body.extend(
            f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3" fill="{colour}">'
            f"<title>{escape(labels[i])}, {escape(name)}: {_num(series[name][i])}</title></circle>"
            for i, (x, y) in enumerate(points)
        )
        marks += 1
    body.extend(_x_labels(frame, xs))
    return body, marks


def render_chart(chart: Chart, table: dict[str, Any]) -> str:
    """One ``<figure>`` with the chart of ``table``, or a note when the period has no data."""
    columns: list[str] = table["columns"]
    names = list(chart.series or [c for c in columns[1:] if c != "total"])
    labels = [str(row[0]) for row in table["rows"]]
    series = {
        n.replace("_", " "): [float(row[columns.index(n)] or 0) for row in table["rows"]]
        for n in names
    }
    name = f"{chart.section}-{chart.table}".replace("_", "-")
    has_data = any(v for vs in series.values() for v in vs)
    if not has_data:
        body = '<p class="empty">No data in this period.</p>'
        marks = 0
    else:
        frame = _Frame(tuple(labels))
        if chart.kind == "line":
            parts, marks = _lines(frame, series)
        else:
            parts, marks = _bars(frame, series, stacked=chart.kind == "stacked")
        legend = _legend(list(series), chart.kind == "line") if len(series) > 1 else ""
        body = legend + _svg(frame, table["title"], parts)
    return (
        f'<figure class="chart" id="chart-{name}" data-chart="{name}" data-marks="{marks}">'
        f"<figcaption>{cited(table['title'])}</figcaption>{body}</figure>"
    )


def _value(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if percent and isinstance(value, float):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _summary(summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(k.replace('_', ' '))}</th>"
        f"<td>{_value(v, percent='share' in k or 'rate' in k)}</td></tr>"
        for k, v in summary.items()
    )
    return f'<table class="summary">{rows}</table>'


def _html_table(name: str, table: dict[str, Any]) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in table["columns"])
    rows = "".join(
        "<tr>" + "".join(f"<td>{_value(v)}</td>" for v in row) + "</tr>" for row in table["rows"]
    )
    long = len(table["rows"]) > 15
    inner = (
        f'<div class="scroll"><table class="data" id="table-{escape(name)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )
    summary = f"{cited(table['title'])} ({len(table['rows'])} rows; CSV: {escape(name)}.csv)"
    return f"<details{'' if long else ' open'}><summary>{summary}</summary>{inner}</details>"


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;
background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
header{background:#1b4f8a;color:#fff;padding:20px 24px}
header h1{margin:0 0 6px;font-size:22px}
header p{margin:2px 0;opacity:.9}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:16px 20px;margin:18px 0}
h2{margin:0 0 10px;font-size:18px;color:#1b4f8a}
table{border-collapse:collapse;margin:8px 0}
th,td{padding:3px 10px;border-bottom:1px solid #e6e9ee;text-align:left;
font-variant-numeric:tabular-nums}
table.summary th{font-weight:500;color:#4a5868}
figure{margin:14px 0}
figcaption{font-weight:600;margin-bottom:4px}
svg{max-width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#4a5868}
svg .ylabel{text-anchor:end}
svg .xlabel{text-anchor:middle}
svg .xlabel.rot{text-anchor:end}
svg .grid{stroke:#e6e9ee}
details{margin:8px 0}
summary{cursor:pointer;color:#1b4f8a}
.empty{color:#888;font-style:italic}
ul.legend{list-style:none;margin:4px 0;padding:0 0 0 56px;display:flex;flex-wrap:wrap;gap:2px 14px;
font-size:12px;color:#4a5868}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;vertical-align:-1px}
.swatch.line{height:3px;vertical-align:3px}
.scroll{overflow-x:auto}
.note{color:#4a5868}
"""


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one HTML page (UTF-8 text)."""
    period = report["period"]
    charts_by_section: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for chart in CHARTS:
        table = report[chart.section]["tables"][chart.table]
        charts_by_section[chart.section].append(render_chart(chart, table))
    sections = []
    for section in SECTIONS:
        data = report[section]
        tables = "".join(
            _html_table(f"{section}-{name}".replace("_", "-"), table)
            for name, table in data["tables"].items()
        )
        sections.append(
            f'<section id="{section}"><h2>{cited(SECTION_TITLES[section])}</h2>'
            f"{_summary(data['summary'])}{''.join(charts_by_section[section])}{tables}</section>"
        )
    title = escape(report["title"])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{title}</h1>"
        f"<p>Period: {escape(period['from'])} to {escape(period['to'])} (inclusive) · "
        f"{report['member_states']} UN member States</p></header><main>"
        f'<p class="note">{escape(report["confidentiality"])}</p>'
        f'<p class="note">{escape(RULES_NOTE).replace(RULES_DOCUMENT, _document_link())}</p>'
        + "".join(sections)
        + "</main></body></html>\n"
    )


def _document_link() -> str:
    return f'<a href="{escape(RULES_DOCUMENT)}">{escape(RULES_DOCUMENT)}</a>'
