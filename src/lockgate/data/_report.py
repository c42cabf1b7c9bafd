"""A validation report for machines and people: its one-line verdict, JSON, and one
self-contained HTML page with a plot per column (the terminal table is the CLI's, in
``cli/data.py``, where rich lives).

The HTML page carries plotly's JavaScript inline and loads nothing from the network, so it opens
on an air-gapped machine and can be attached to a ticket. Every value that came from the data is
escaped: text through ``html.escape``, plot data as JSON with ``<``, ``>`` and ``&`` written as
``\\u`` escapes, so a value such as ``</script>`` stays text.

>>> import pyarrow as pa
>>> from lockgate.data._contract import Contract
>>> from lockgate.data._validate import validate
>>> contract = Contract.from_yaml("name: t\\ncolumns:\\n  x: {type: int64, max: 10}")
>>> report = validate(pa.table({"x": [1, 20]}), contract)
>>> json.loads(report_json(report))["failures"][0]["message"]
'x: 1 row (50%) above the maximum 10, e.g. 20.'
>>> page = report_html(report)
>>> page.startswith("<!DOCTYPE html>") and 'src="http' not in page
True
"""

from __future__ import annotations

import html
import itertools
import json
from typing import Any

from lockgate.data._profile import ColumnProfile
from lockgate.data._validate import ValidationReport
from lockgate.data._wording import jsonable, rows, share, value

__all__ = ["report_html", "report_json", "verdict"]


def verdict(report: ValidationReport) -> str:
    """One line: PASSED or FAILED, rows, contract, error and warning counts, time."""
    errors, warnings = len(report.errors), len(report.warnings)
    version = f" v{report.contract_version}" if report.contract_version is not None else ""
    parts = [f"{errors} error{'s' if errors != 1 else ''}", f"{warnings} warning{'s' if warnings != 1 else ''}"]
    if report.quarantined is not None and report.quarantined.num_rows:
        parts.append(f"{rows(report.quarantined.num_rows)} quarantined")
    word = "PASSED" if report.passed else "FAILED"
    return f"{word}: {rows(report.rows)} against contract {report.contract_name}{version}; {', '.join(parts)} ({report.seconds:.2f} s)"


def report_json(report: ValidationReport) -> str:
    """The report as a JSON document (:meth:`ValidationReport.to_json`), keys in a fixed order."""
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False, allow_nan=False)


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``, no stray ``&``."""
    text = json.dumps(jsonable(data), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure(profile: ColumnProfile) -> dict[str, Any] | None:
    layout: dict[str, Any] = {
        "height": 220,
        "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
        "bargap": 0.05,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    if profile.histogram is not None:
        edges, counts = profile.histogram
        x = (
            edges[:-1]
            if not isinstance(edges[0], (int, float))
            else [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        )
        trace = {
            "type": "bar",
            "x": x,
            "y": counts,
            "marker": {"color": "#4c78a8"},
            "hovertemplate": "%{x}: %{y}<extra></extra>",
        }
        return {"data": [trace], "layout": {**layout, "yaxis": {"title": {"text": "rows"}}}}
    if profile.top_values and profile.top_values[0][1] > 1:  # all-distinct values make a flat, useless chart
        labels = [value(v) if not isinstance(v, str) else v for v, _ in profile.top_values][::-1]
        counts = [c for _, c in profile.top_values][::-1]
        trace = {"type": "bar", "orientation": "h", "x": counts, "y": labels, "marker": {"color": "#f58518"}}
        return {
            "data": [trace],
            "layout": {**layout, "margin": {**layout["margin"], "l": 120}, "yaxis": {"type": "category"}},
        }
    return None


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
.verdict { display: inline-block; padding: .2rem .7rem; border-radius: .3rem; font-weight: 600; color: #fff; }
.pass { background: #2e7d32; } .fail { background: #c62828; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #c62828; font-weight: 600; } .warn { color: #b26a00; font-weight: 600; }
.muted { color: #666; }
.columns { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 1rem; }
.column { border: 1px solid #e3e3e3; border-radius: .4rem; padding: .6rem .8rem; }
.column h3 { margin: 0 0 .3rem; font-size: 1rem; } .column table { margin: 0; } .column td { border: 0; padding: .1rem .3rem; }
"""


def _stat(profile: ColumnProfile) -> list[tuple[str, str]]:
    out = [("rows", f"{profile.rows:,}"), ("missing", f"{profile.nulls:,} ({share(profile.null_share)})")]
    if profile.distinct is not None:
        out.append(("distinct", f"{profile.distinct:,}"))
    if profile.min is not None:
        out.append(("min", value(profile.min)))
        out.append(("max", value(profile.max)))
    if profile.mean is not None:
        out.append(("mean", f"{profile.mean:.6g}"))
    if profile.sampled:
        out.append(("histogram", "from evenly spaced rows"))
    return out


def report_html(report: ValidationReport) -> str:
    """One self-contained HTML page: verdict, failures, and a profile with a plot per column."""
    from plotly.offline import get_plotlyjs

    version = f" v{report.contract_version}" if report.contract_version is not None else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(report.contract_name)}{_e(version)}: data contract report</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>Data contract {_e(report.contract_name)}{_e(version)}</h1>",
        (
            f'<p><span class="verdict {"pass" if report.passed else "fail"}">{"PASSED" if report.passed else "FAILED"}'
            f'</span> <span class="muted">{_e(verdict(report))}; checked at '
            f"{_e(report.checked_at.isoformat(timespec='seconds'))}</span></p>"
        ),
    ]
    parts.append("<h2>Failures</h2>")
    if report.failures:
        parts.append(
            '<table><thead><tr><th>check</th><th>column</th><th>severity</th><th class="num">rows</th>'
            '<th class="num">share</th><th>examples</th><th>message</th></tr></thead><tbody>'
        )
        for f in report.failures:
            severity = f.severity + (" (quarantined)" if f.quarantined else "")
            parts.append(
                f"<tr><td>{_e(f.check)}</td><td>{_e(f.column or '-')}</td>"
                f'<td class="{_e(f.severity)}">{_e(severity)}</td><td class="num">{f.rows:,}</td>'
                f'<td class="num">{_e(share(f.share))}</td><td>{_e(", ".join(value(v) for v in f.examples))}</td>'
                f"<td>{_e(f.message)}</td></tr>"
            )
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="muted">None: every rule held.</p>')
    if report.skipped:
        parts.append("<h2>Not checked</h2><ul>" + "".join(f"<li>{_e(s)}</li>" for s in report.skipped) + "</ul>")

    figures: dict[str, Any] = {}
    if report.profiles:
        parts.append('<h2>Columns</h2><div class="columns">')
        for i, profile in enumerate(report.profiles.values()):
            stats = "".join(f'<tr><td class="muted">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in _stat(profile))
            figure = _figure(profile)
            plot = ""
            if figure is not None:
                figures[f"plot-{i}"] = figure
                plot = f'<div id="plot-{i}"></div>'
            parts.append(
                f'<div class="column"><h3>{_e(profile.name)} <span class="muted">{_e(profile.type)}</span></h3>'
                f"<table>{stats}</table>{plot}</div>"
            )
        parts.append("</div>")
    parts.append(
        "<script>"
        f"const figures = {_script_json(figures)};"
        "for (const [id, fig] of Object.entries(figures)) {"
        "Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false, responsive: true});"
        "}</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
