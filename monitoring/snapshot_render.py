"""Evaluates the Grafana dashboard's queries on a Prometheus server and draws
the dashboard as one SVG: the panels where gridPos puts them, time series as
lines with their legends, stat panels as numbers, tables as tables.

Standard library only.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

WIDTH = 1600  # pixels for the dashboard's 24 columns
ROW = 30  # pixels per gridPos height unit
GAP = 8
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A6", "#705DA0",
           "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"]
FONT = "font-family='Inter, Helvetica, Arial, sans-serif'"


@dataclass
class Series:
    legend: str
    labels: dict
    points: list[tuple[float, float]]  # (unix time, value); NaN kept as a gap
    ref_id: str = "A"  # the query's, which field overrides match


@dataclass
class Panel:
    spec: dict
    series: list[Series] = field(default_factory=list)
    empty_targets: list[str] = field(default_factory=list)  # refIds that returned nothing

    @property
    def has_data(self) -> bool:
        return any(any(math.isfinite(v) for _, v in s.points) for s in self.series)


def substitute(expr: str, dashboard: dict, step: float, scrape: float) -> str:
    """Grafana's variables at their "All" value; $__rate_interval as Grafana
    computes it: max($__interval + scrape interval, 4 x scrape interval)."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("includeAll"):
            expr = expr.replace("$" + variable["name"], variable.get("allValue") or ".*")
    rate_interval = max(step + scrape, 4 * scrape)
    expr = expr.replace("$__rate_interval", f"{int(rate_interval)}s").replace("$__interval", f"{int(step)}s")
    if "$" in expr:
        raise ValueError(f"a dashboard variable is left in {expr}")
    return expr


def prometheus_get(base: str, path: str, params: dict) -> list[dict]:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]["result"]


def legend(target: dict, labels: dict) -> str:
    fmt = target.get("legendFormat")
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def evaluate(base: str, dashboard: dict, start: float, end: float, step: float, scrape: float) -> list[Panel]:
    """Every panel with the series its targets return over [start, end]."""
    panels = []
    for spec in dashboard["panels"]:
        panel = Panel(spec)
        panels.append(panel)
        for target in spec.get("targets", []):
            expr = substitute(target["expr"], dashboard, step, scrape)
            if target.get("instant") or target.get("format") == "table":
                result = prometheus_get(base, "/api/v1/query", {"query": expr, "time": end})
                rows = [(r["metric"], [tuple(r["value"])]) for r in result]
            else:
                result = prometheus_get(base, "/api/v1/query_range",
                                        {"query": expr, "start": start, "end": end, "step": step})
                rows = [(r["metric"], r["values"]) for r in result]
            found = [Series(legend(target, labels), labels, [(float(t), float(v)) for t, v in values],
                            target.get("refId", "A"))
                     for labels, values in rows]
            if not any(math.isfinite(v) for s in found for _, v in s.points):
                panel.empty_targets.append(target.get("refId", "?"))
            panel.series.extend(sorted(found, key=lambda s: (s.legend, sorted(s.labels.items()))))
    return panels


def field_config(spec: dict, ref_id: str) -> dict:
    """The unit and axis placement of a query's series: the panel's
    defaults, then its overrides that match the query's refId, in order."""
    defaults = spec.get("fieldConfig", {}).get("defaults", {})
    config = {"unit": defaults.get("unit"),
              "custom.axisPlacement": defaults.get("custom", {}).get("axisPlacement", "auto")}
    for override in spec.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byFrameRefID" and matcher.get("options") == ref_id:
            config.update({p["id"]: p.get("value") for p in override.get("properties", []) if "id" in p})
    return config


@dataclass
class Axis:
    unit: str | None
    members: list[int] = field(default_factory=list)  # indexes of the panel's series
    top: float = 1.0


def split_axes(panel: Panel) -> list[Axis]:
    """The y axes as Grafana draws them: the left one in the panel's unit,
    a right one for the series an override puts right or gives another unit."""
    left = Axis(panel.spec.get("fieldConfig", {}).get("defaults", {}).get("unit"))
    right = Axis(None)
    for n, s in enumerate(panel.series):
        config = field_config(panel.spec, s.ref_id)
        placement = config.get("custom.axisPlacement") or "auto"
        if placement == "right" or (placement == "auto" and config.get("unit") != left.unit):
            right.unit = config.get("unit") if not right.members else right.unit
            right.members.append(n)
        else:
            left.members.append(n)
    axes = [left] + ([right] if right.members else [])
    for axis in axes:
        finite = [v for n in axis.members for _, v in panel.series[n].points if math.isfinite(v)]
        axis.top = axis_top(max(finite, default=0), axis.unit)
    return axes


def format_value(value: float, unit: str | None) -> str:
    """A value as Grafana shows it for the units the dashboard uses."""
    if not math.isfinite(value):
        return "+Inf" if value > 0 else ("-Inf" if value < 0 else "NaN")
    if unit == "s":
        for scale, suffix in ((3600, " h"), (60, " min"), (1, " s"), (1e-3, " ms"), (1e-6, " µs")):
            if abs(value) >= scale or scale == 1e-6:
                return f"{value / scale:.3g}{suffix}" if value else "0 s"
    if unit == "bytes":
        for scale, suffix in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.0f} B"
    suffix = {"ops": " ops/s", "reqps": " req/s"}.get(unit or "", "")
    for scale, letter in ((1e9, " B"), (1e6, " M"), (1e3, " K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{letter}{suffix}"
    return f"{value:.3g}{suffix}"


def text(x: float, y: float, content: str, size: int = 12, fill: str = "#222", anchor: str = "start",
         weight: str = "normal") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' fill='{fill}' text-anchor='{anchor}' "
            f"font-weight='{weight}' {FONT}>{html.escape(content)}</text>")


def nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 6, 8, 10) if m * power >= value)


def axis_top(value: float, unit: str | None) -> float:
    """The top of a y axis: a round number in the unit shown (MiB for bytes)."""
    scale = next((s for s in (2**30, 2**20, 2**10) if value >= s), 1) if unit == "bytes" else 1
    return nice_max(value / scale) * scale


def draw_legend(series: list[Series], x: float, y: float, width: float, bottom: float) -> list[str]:
    """Swatch and name per series, wrapped; what does not fit is counted."""
    out, cx, cy = [], x, y
    for n, s in enumerate(series):
        label = s.legend or "(no labels)"
        w = 18 + 6.5 * len(label) + 14
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 16
        if cy > bottom:
            out.append(text(x + width, bottom, f"+{len(series) - n} more", 11, "#666", "end"))
            break
        out.append(f"<rect x='{cx:.1f}' y='{cy - 8:.1f}' width='12' height='4' fill='{PALETTE[n % len(PALETTE)]}'/>")
        out.append(text(cx + 16, cy - 2, label, 11, "#333"))
        cx += w
    return out


def legend_rows(series: list[Series], width: float) -> int:
    rows, used = 1, 0.0
    for s in series:
        w = 18 + 6.5 * len(s.legend or "(no labels)") + 14
        if used + w > width and used > 0:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def draw_timeseries(panel: Panel, box: tuple[float, float, float, float], start: float, end: float) -> list[str]:
    x, y, w, h = box
    axes = split_axes(panel)
    rows = min(legend_rows(panel.series, w - 70), 3)
    plot_x, plot_y, plot_w, plot_h = x + 62, y + 6, w - 74 - 56 * (len(axes) - 1), h - 34 - 16 * rows
    top_of = {n: axis.top for axis in axes for n in axis.members}
    out = []
    for n in range(5):
        gy = plot_y + plot_h - plot_h * n / 4
        out.append(f"<line x1='{plot_x}' y1='{gy:.1f}' x2='{plot_x + plot_w}' y2='{gy:.1f}' stroke='#e6e6e6'/>")
        out.append(text(plot_x - 6, gy + 4, format_value(axes[0].top * n / 4, axes[0].unit), 10, "#666", "end"))
        if len(axes) > 1:
            out.append(text(plot_x + plot_w + 6, gy + 4, format_value(axes[1].top * n / 4, axes[1].unit), 10,
                            "#666"))
    span = max(end - start, 1)
    for n in range(5):
        t = start + span * n / 4
        gx = plot_x + plot_w * n / 4
        anchor = "start" if n == 0 else "end" if n == 4 else "middle"
        out.append(text(gx, plot_y + plot_h + 14, time.strftime("%H:%M:%S", time.gmtime(t)), 10, "#666", anchor))
    for n, s in enumerate(panel.series):
        color, top = PALETTE[n % len(PALETTE)], top_of[n]
        for run in split_runs(s.points):
            coords = " ".join(f"{plot_x + plot_w * (t - start) / span:.1f},"
                              f"{plot_y + plot_h - plot_h * min(v, top) / top:.1f}" for t, v in run)
            if len(run) == 1:
                px, py = coords.split(",")
                out.append(f"<circle cx='{px}' cy='{py}' r='1.5' fill='{color}'/>")
            else:
                out.append(f"<polyline points='{coords}' fill='none' stroke='{color}' stroke-width='1.5'/>")
    out += draw_legend(panel.series, x + 8, plot_y + plot_h + 34, w - 16, y + h - 4)
    return out


def split_runs(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The stretches of finite values: NaN and +Inf are gaps, as in Grafana."""
    runs, run = [], []
    for t, v in points:
        if math.isfinite(v):
            run.append((t, v))
        elif run:
            runs.append(run)
            run = []
    return runs + ([run] if run else [])


def last_value(s: Series) -> float:
    values = [v for _, v in s.points if not math.isnan(v)]
    return values[-1] if values else math.nan


def draw_stat(panel: Panel, box: tuple[float, float, float, float]) -> list[str]:
    x, y, w, h = box
    shown = panel.series[:6]
    out = []
    for n, s in enumerate(shown):
        cw = w / len(shown)
        cx = x + cw * n + cw / 2
        unit = field_config(panel.spec, s.ref_id).get("unit")
        out.append(text(cx, y + h / 2 + 14, format_value(last_value(s), unit), 44, "#3a8f3a", "middle", "bold"))
        out.append(text(cx, y + h / 2 + 40, s.legend, 12, "#555", "middle"))
    return out


def draw_table(panel: Panel, box: tuple[float, float, float, float]) -> list[str]:
    x, y, w, h = box
    excluded = {k for t in panel.spec.get("transformations", []) if t.get("id") == "organize"
                for k, v in t.get("options", {}).get("excludeByName", {}).items() if v}
    columns = sorted({k for s in panel.series for k in s.labels if k not in ("__name__", "instance")}, key=str)
    show_value = "Value" not in excluded
    headers = columns + (["Value"] if show_value else [])
    cw = w / max(len(headers), 1)
    out = [f"<rect x='{x}' y='{y}' width='{w}' height='20' fill='#f4f5f5'/>"]
    out += [text(x + cw * n + 6, y + 14, name, 11, "#333", weight="bold") for n, name in enumerate(headers)]
    for r, s in enumerate(panel.series):
        ry = y + 20 + 18 * (r + 1)
        if ry > y + h - 4:
            out.append(text(x + w - 4, y + h - 4, f"+{len(panel.series) - r} more rows", 11, "#666", "end"))
            break
        cells = [s.labels.get(c, "") for c in columns] + ([format_value(last_value(s), None)] if show_value else [])
        out += [text(x + cw * n + 6, ry - 4, cell, 11) for n, cell in enumerate(cells)]
    return out


def render(panels: list[Panel], title: str, start: float, end: float) -> str:
    """The whole dashboard as an SVG document."""
    col = WIDTH / 24
    header = 44
    height = header + ROW * max(p.spec["gridPos"]["y"] + p.spec["gridPos"]["h"] for p in panels) + GAP
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' viewBox='0 0 {WIDTH} {height}'>",
           f"<rect width='{WIDTH}' height='{height}' fill='#ffffff'/>",
           text(GAP, 28, title, 20, "#111", weight="bold"),
           text(WIDTH - GAP, 28, f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start))} to "
                                 f"{time.strftime('%H:%M:%S', time.gmtime(end))} UTC, namespace All, job All",
                13, "#555", "end")]
    for panel in panels:
        grid = panel.spec["gridPos"]
        x, y = grid["x"] * col + GAP / 2, header + grid["y"] * ROW + GAP / 2
        w, h = grid["w"] * col - GAP, grid["h"] * ROW - GAP
        if panel.spec["type"] == "row":
            out.append(text(x, y + 18, panel.spec["title"], 16, "#111", weight="bold"))
            continue
        out.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' rx='3' fill='#ffffff' "
                   f"stroke='#d8d9da'/>")
        out.append(text(x + 8, y + 18, panel.spec["title"], 13, "#111", weight="bold"))
        body = (x + 4, y + 26, w - 8, h - 30)
        if not panel.has_data:
            out.append(text(x + w / 2, y + h / 2 + 6, "No data", 16, "#888", "middle"))
        elif panel.spec["type"] == "stat":
            out += draw_stat(panel, body)
        elif panel.spec["type"] == "table":
            out += draw_table(panel, body)
        else:
            out += draw_timeseries(panel, body, start, end)
    out.append("</svg>")
    return "\n".join(out) + "\n"
