"""The report as one self-contained HTML file.

Safety: every text from a run is escaped (markup from Python) or set as textContent (the viewer's script); the
viewer's rows travel gzip-compressed in base64, so no row text can close its element. A strict
Content-Security-Policy allows only the page's own script and style (by hash) and data: images: nothing leaves
the page, and an injected handler or script would not run even if it reached the markup.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from datetime import datetime, timezone
from html import escape
from importlib.resources import files
from typing import Any

from retrosearch.tables import cell
from retrosearch.tools.report.runs import Report, Section, Table, Viewer

MB = 1024 * 1024


def _asset(name: str) -> str:
    return files("retrosearch.tools.report").joinpath("assets", name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _json_in_script(value: Any) -> str:
    """JSON that cannot end its script element, whatever its strings hold."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _value(value: Any) -> str:
    if isinstance(value, list) and len(value) > 50:
        value = [*value[:50], f"… and {len(value) - 50:,} more"]
    return cell(value) if value is not None else "-"


FIGURE = re.compile(r"[+-]?\d[\d,]*(\.\d+)?×?( ± \d+(\.\d+)?)?")  # a figure a table gives as text: +2.5, 0.733× ± 0.010


def _numeric(value: Any) -> bool:
    if isinstance(value, str):
        return FIGURE.fullmatch(value) is not None
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(str(header))}</th>" for header in table.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(_value(value))}</td>' if _numeric(value) else f"<td>{escape(_value(value))}</td>"
            for value in row
        )
        + "</tr>"
        for row in table.rows
    )
    return f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(figures: dict[str, Any], caption: str) -> str:
    rows = "".join(
        f'<tr><th>{escape(str(name))}</th><td class="{"num" if _numeric(value) else "text"}" '
        f'data-figure="{escape(str(name))}">{escape(_value(value))}</td></tr>'
        for name, value in figures.items()
    )
    return f"<div><h3>{escape(caption)}</h3><table><tbody>{rows}</tbody></table></div>"


def _section(section: Section, number: int) -> str:
    parts = [f'<section id="section-{number}"><h2>{escape(section.title)}</h2>']
    if section.headline:
        parts.append('<div class="headline">')
        parts += [
            f'<div class="big"><span>{escape(label)}</span><strong>{escape(value)}</strong></div>'
            for label, value in section.headline
        ]
        parts.append("</div>")
    parts.append('<div class="cards">')
    if section.figures:
        parts.append(_figures(section.figures, "Summary (summary.json)"))
    facts = {name: value for name, value in section.facts.items() if value not in (None, "")}
    if facts:
        parts.append(_figures(facts, "Run"))
    parts.append("</div>")
    parts += [_table(table) for table in section.tables]
    if section.plots:
        parts.append('<div class="plots">')
        for plot in section.plots:
            parts.append(
                f'<figure><img src="{plot.uri}" alt="{escape(plot.title)}">'
                f"<figcaption><strong>{escape(plot.title)}.</strong> {escape(plot.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    if section.config:
        shown = escape(json.dumps(section.config, indent=2, ensure_ascii=False))
        parts.append(f"<details><summary>Settings (manifest.json)</summary><pre>{shown}</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def _packed(rows: list[dict[str, Any]]) -> str:
    raw = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()


def _fitted(rows: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], str]:
    """The longest prefix of the sample (still a uniform sample) whose packed form fits in `budget` bytes, in input
    order."""
    count = len(rows)
    while True:
        kept = sorted(rows[:count], key=lambda row: row["n"])
        packed = _packed(kept)
        if len(packed) <= budget or count == 0:
            return kept, packed
        count = min(count - 1, int(count * budget / len(packed) * 0.95))


def _viewer(viewer: Viewer, packed: str, shown: int) -> str:
    legend = (
        '<p class="legend"><span class="kept">kept prefix</span><span class="cut">cut from the original</span>'
        '<span class="new">new rollout</span><span class="answer">answer</span> switch keywords '
        '<mark class="kw">highlighted</mark></p>'
        if viewer.mode == "compare"
        else '<p class="legend"><span class="answer">answer</span> switch keywords <mark class="kw">highlighted</mark>'
        "</p>"
    )
    sorts = '<option value="">input order</option>'
    if viewer.mode == "compare":
        sorts += '<option value="saved">most tokens saved</option>'
    sorts += '<option value="longest">longest</option>'
    columns = "<th>id</th><th>status</th><th>" + escape(viewer.group_label) + "</th>"
    columns += (
        '<th class="num">tokens</th><th class="num">saved</th>'
        if viewer.mode == "compare"
        else ('<th class="num">tokens</th>')
    )
    total = viewer.total
    note = (
        f"all {total:,} rows"
        if shown == total
        else f"{shown:,} of {total:,} rows, a uniform random sample (seed 0) to keep the file small; "
        "the figures and plots above count every row"
    )
    meta = {"mode": viewer.mode, "group_label": viewer.group_label, "rows": shown, "total": total}
    return (
        '<section id="viewer"><h2>Trace viewer</h2>'
        f'<p class="muted" id="viewer-note">Showing {escape(note)}.</p>{legend}'
        '<div class="controls"><select id="filter-status" aria-label="status"></select>'
        f'<select id="filter-group" aria-label="{escape(viewer.group_label)}"></select>'
        '<input id="filter-id" type="search" placeholder="search id" aria-label="search id">'
        f'<select id="sort" aria-label="sort">{sorts}</select><span id="count" class="muted"></span></div>'
        f'<div class="viewer"><div class="list"><table><thead><tr>{columns}</tr></thead><tbody id="rows"></tbody>'
        '</table></div><div id="detail"></div></div>'
        f'<script type="application/json" id="viewer-meta">{_json_in_script(meta)}</script>'
        f'<script type="application/gzip+base64" id="viewer-rows">{packed}</script></section>'
    )


def render(report: Report, max_bytes: int) -> tuple[str, int]:
    """The page, at most `max_bytes` long (the viewer gets what the rest leaves), and the rows it shows."""
    script, style = _asset("report.js"), _asset("report.css")
    policy = (
        f"default-src 'none'; script-src {_hash(script)}; style-src {_hash(style)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(
        f'<a href="#section-{number}">{escape(section.title)}</a>' for number, section in enumerate(report.sections)
    )
    if report.viewer is not None:
        nav += '<a href="#viewer">Trace viewer</a>'
    sections = "".join(_section(section, number) for number, section in enumerate(report.sections))

    def page(viewer_html: str) -> str:
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(report.title)}</title><style>{style}</style></head><body>"
            f"<header><h1>{escape(report.title)}</h1><p>{escape(str(report.folder))} · report made {made} by "
            f"retrosearch</p><nav>{nav}</nav></header><main>"
            + sections
            + viewer_html
            + f"</main><script>{script}</script></body></html>"
        )

    if report.viewer is None:
        return page('<script type="application/json" id="viewer-meta">{"rows": 0}</script>'), 0
    frame = len(page(_viewer(report.viewer, "", 0)).encode()) + 1024
    if frame > max_bytes:
        raise ValueError(f"the report without its rows already takes {frame / MB:.1f} MB; allow more with --max-mb")
    rows, packed = _fitted(report.viewer.rows, max_bytes - frame)
    return page(_viewer(report.viewer, packed, len(rows))), len(rows)
