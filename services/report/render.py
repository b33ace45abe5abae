"""The report as a self-contained HTML page (inline SVG charts) and as a PDF, both drawn with
matplotlib from one list of sentences, so the two say exactly the same figures."""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import matplotlib as mpl
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure, FigureBase

from services.report.figures import ANNUAL_REFERENCE_T, Figures

# TrueType fonts in the PDF (not Type 3): text stays text, so it can be searched and copied.
mpl.rcParams["pdf.fonttype"] = 42
mpl.rcParams["svg.fonttype"] = "none"
mpl.rcParams["font.size"] = 9

A4_IN = (8.27, 11.69)
COLOURS = {"apartment": "#1f77b4", "row_house": "#ff7f0e", "detached": "#2ca02c"}
TITLE = "Gwangmyeong climate facilities: report"


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    lines: list[str]


def _kwh(value: float) -> str:
    return f"{value:,.1f} kWh"


def sections(figures: Figures) -> list[Section]:
    """The report's figures as sentences, in reading order."""
    cafe, visitors, ewaste = figures.cafe, figures.visitors, figures.ewaste
    sufficiency = cafe.self_sufficiency_pct
    cafe_lines = [
        f"Net balance: {cafe.net_kwh:+,.1f} kWh "
        f"({'net zero' if cafe.net_kwh >= 0 else 'short of net zero'})",
        f"PV produced {_kwh(cafe.total('pv_kwh'))}, used {_kwh(cafe.total('load_kwh'))}",
        f"Grid import {_kwh(cafe.total('import_kwh'))}, export {_kwh(cafe.total('export_kwh'))}",
        "Self-sufficiency: "
        + ("no load measured" if sufficiency is None else f"{sufficiency:.0f} %"),
    ]
    busiest = max(visitors.per_day.items(), key=lambda kv: kv[1], default=None)
    days = len(figures.period.days())
    visitor_lines = [
        f"Visitors: {visitors.total:,} in {days} days "
        f"({visitors.total / days:,.0f} a day on average)",
    ]
    if busiest is not None:
        visitor_lines.append(f"Busiest day: {busiest[0]:%a %d %b} with {busiest[1]:,} visitors")
    peak = f"Peak occupancy: {visitors.peak_occupancy:,} people"
    if visitors.peak_at is not None:
        peak += f" on {visitors.peak_at:%a %d %b %H:%M}"
    if visitors.capacity:
        peak += (
            f" ({100 * visitors.peak_occupancy / visitors.capacity:.0f} % of {visitors.capacity})"
        )
    visitor_lines.append(peak)
    ewaste_lines = [f"E-waste collected: {ewaste.total_kg:,.0f} kg"]
    ewaste_lines += [
        f"  {kind.replace('_', ' ')}: {kg:,.0f} kg"
        for kind, kg in sorted(ewaste.kg_by_type.items())
    ]
    ewaste_lines.append(
        f"This year ({ewaste.year}): {ewaste.year_t:,.1f} t of {ANNUAL_REFERENCE_T:.0f} t "
        f"({ewaste.year_share_pct:.0f} %)"
    )
    alert_lines = [f"Alerts fired: {figures.alerts_total}"]
    alert_lines += [
        f"  {rule} ({severity}): {count}"
        for (rule, severity), count in sorted(figures.alerts.items(), key=lambda kv: -kv[1])
    ]
    trip_lines = [
        f"Collection trips: {figures.trips_total} "
        f"({sum(t.collected_kg for t in figures.trips):,.0f} kg brought in)"
    ]
    for trip in figures.trips:
        km = "" if trip.route_km is None else f", {trip.route_km:,.1f} km"
        trip_lines.append(f"  {trip.zone}: {trip.completed} trips, {trip.collected_kg:,.0f} kg{km}")
    return [
        Section(cafe.name, cafe_lines),
        Section(visitors.name, visitor_lines),
        Section("E-waste collection", ewaste_lines),
        Section("Alerts and trips", alert_lines + trip_lines),
    ]


# -- charts -----------------------------------------------------------------------------------
def _day_labels(figures: Figures) -> list[str]:
    return [f"{day:%a %d}" for day in figures.period.days()]


def cafe_chart(figures: Figures, fig: FigureBase) -> None:
    ax = fig.add_subplot()
    by_day = {d.day: d for d in figures.cafe.days}
    days = figures.period.days()
    x = range(len(days))
    pv = [by_day[d].pv_kwh if d in by_day else 0.0 for d in days]
    load = [by_day[d].load_kwh if d in by_day else 0.0 for d in days]
    ax.bar([i - 0.2 for i in x], pv, width=0.4, label="PV produced", color="#f2b705")
    ax.bar([i + 0.2 for i in x], load, width=0.4, label="Used", color="#5b6c8f")
    ax.set_xticks(list(x), _day_labels(figures), rotation=45 if len(days) > 10 else 0)
    ax.set_ylabel("kWh per day")
    ax.set_ylim(0, max([*pv, *load, 1.0]) * 1.25)  # room for the legend above the bars
    ax.set_title(f"{figures.cafe.name}: energy per day")
    ax.legend(loc="upper left", ncols=2)


def visitors_chart(figures: Figures, fig: FigureBase) -> None:
    ax = fig.add_subplot()
    days = figures.period.days()
    counts = [figures.visitors.per_day.get(d, 0) for d in days]
    ax.bar(range(len(days)), counts, color="#7b4fa0")
    ax.set_xticks(range(len(days)), _day_labels(figures), rotation=45 if len(days) > 10 else 0)
    ax.set_ylabel("visitors per day")
    ax.set_title(f"{figures.visitors.name}: visitors per day")


def ewaste_chart(figures: Figures, fig: FigureBase) -> None:
    ax = fig.add_subplot()
    days = figures.period.days()
    kinds = sorted({k for per in figures.ewaste.kg_per_day.values() for k in per})
    bottom = [0.0] * len(days)
    for kind in kinds:
        kg = [figures.ewaste.kg_per_day.get(d, {}).get(kind, 0.0) for d in days]
        ax.bar(
            range(len(days)),
            kg,
            bottom=bottom,
            label=kind.replace("_", " "),
            color=COLOURS.get(kind),
        )
        bottom = [b + k for b, k in zip(bottom, kg, strict=True)]
    ax.set_xticks(range(len(days)), _day_labels(figures), rotation=45 if len(days) > 10 else 0)
    ax.set_ylabel("kg collected per day")
    ax.set_ylim(0, max([*bottom, 1.0]) * 1.25)  # room for the legend above the bars
    ax.set_title("E-waste collected per day by housing type")
    if kinds:
        ax.legend(loc="upper left", ncols=len(kinds))


def year_chart(figures: Figures, fig: FigureBase) -> None:
    ax = fig.add_subplot()
    ewaste = figures.ewaste
    ax.barh(
        [0], [ANNUAL_REFERENCE_T], color="#dddddd", label=f"{ANNUAL_REFERENCE_T:.0f} t reference"
    )
    ax.barh([0], [ewaste.year_t], color="#2ca02c", label=f"recycled in {ewaste.year}")
    ax.set_yticks([])
    ax.set_xlim(0, max(ANNUAL_REFERENCE_T, ewaste.year_t) * 1.05)
    ax.set_xlabel("tonnes")
    ax.set_title(f"Recycled this year: {ewaste.year_t:,.1f} t of {ANNUAL_REFERENCE_T:.0f} t")
    ax.legend(loc="lower right")


Chart = Callable[[Figures, FigureBase], None]
CHARTS: tuple[Chart, ...] = (cafe_chart, visitors_chart, ewaste_chart, year_chart)
# Which charts follow which section (by index), in both renderings.
CHARTS_AFTER = {0: (cafe_chart,), 1: (visitors_chart,), 2: (ewaste_chart, year_chart)}


def _svg(draw: Chart, figures: Figures) -> str:
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    draw(figures, fig)
    out = io.StringIO()
    fig.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE


# -- HTML -------------------------------------------------------------------------------------
def to_html(figures: Figures, generated: datetime) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(TITLE)} {html.escape(figures.period.label())}</title>",
        "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;color:#222}"
        "h2{border-bottom:1px solid #ccc}li{margin:.2em 0}svg{max-width:100%;height:auto}"
        "</style></head><body>",
        f"<h1>{html.escape(TITLE)}</h1>",
        f"<p>{html.escape(figures.period.label())} (Korean days); generated "
        f"{html.escape(generated.isoformat(timespec='minutes'))}</p>",
    ]
    for index, section in enumerate(sections(figures)):
        parts.append(f"<h2>{html.escape(section.title)}</h2><ul>")
        parts += [f"<li>{html.escape(line.strip())}</li>" for line in section.lines]
        parts.append("</ul>")
        parts += [_svg(draw, figures) for draw in CHARTS_AFTER.get(index, ())]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- PDF --------------------------------------------------------------------------------------
def _text(fig: Figure, top: float, lines: Sequence[tuple[str, float, str]]) -> float:
    """Lines of (text, size, weight) from ``top`` (figure fraction) down; returns the next top."""
    y = top
    for text, size, weight in lines:
        fig.text(0.08, y, text, fontsize=size, fontweight=weight, va="top")
        y -= size * 1.6 / (A4_IN[1] * 72)
    return y


def _charts_page(
    figures: Figures, draws: Sequence[Chart], heading: str, heights: Sequence[float]
) -> Figure:
    fig = Figure(figsize=A4_IN)
    fig.text(0.08, 0.96, heading, fontsize=13, fontweight="bold", va="top")
    grid = fig.add_gridspec(
        len(draws), 1, top=0.9, bottom=0.08, hspace=0.35, height_ratios=list(heights)
    )
    for index, draw in enumerate(draws):
        draw(figures, fig.add_subfigure(grid[index]))
    return fig


def to_pdf(figures: Figures, generated: datetime) -> bytes:
    """Page 1: every figure in words; pages 2 and 3: the charts."""
    out = io.BytesIO()
    with PdfPages(out, metadata={"Title": f"{TITLE} {figures.period.label()}"}) as pdf:
        summary = Figure(figsize=A4_IN)
        lines: list[tuple[str, float, str]] = [
            (TITLE, 15, "bold"),
            (f"{figures.period.label()} (Korean days)", 11, "normal"),
            (f"generated {generated.isoformat(timespec='minutes')}", 8, "normal"),
            ("", 8, "normal"),
        ]
        for section in sections(figures):
            lines.append((section.title, 12, "bold"))
            lines += [(line, 10, "normal") for line in section.lines]
            lines.append(("", 6, "normal"))
        _text(summary, 0.95, lines)
        pdf.savefig(summary)
        pdf.savefig(_charts_page(figures, CHARTS[:2], "Cafe and art center", (1, 1)))
        pdf.savefig(_charts_page(figures, CHARTS[2:], "E-waste collection", (3, 1)))
    return out.getvalue()
