"""One report, two renderings: `report.md` (plots as files next to it) and `report.html` (one self-contained file
to open or attach: plots inlined as PNG data, no script, no external resource). `report.py` decides what the
report says, as a list of `Section`s; this module only renders them."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import pandas as pd

CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:right}th:first-child,td:first-child{text-align:left}
thead th{background:#f4f4f4}tr.highlight td{font-weight:600;background:#fff8e0}
pre{background:#f7f7f7;padding:.7em;overflow-x:auto;font-size:12px}img{max-width:100%;margin:.5em 0}
.note{color:#555}"""


@dataclass
class Section:
    """A report section: a paragraph, then tables (`highlight`: index labels to emphasise), preformatted text and
    plots ((artifact path, PNG bytes), written by the caller next to report.md)."""

    title: str
    text: str = ""
    tables: list[pd.DataFrame] = field(default_factory=list)
    highlight: tuple[str, ...] = ()
    pre: str = ""
    plots: list[tuple[str, bytes]] = field(default_factory=list)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> list[str]:
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    rows = [[str(i), *map(_cell, row)] for i, row in zip(frame.index, frame.itertuples(index=False), strict=True)]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""] + ([section.text, ""] if section.text else [])
        for frame in section.tables:
            lines += [*markdown_table(frame), ""]
        if section.pre:
            lines += ["```", section.pre, "```", ""]
        for path, _ in section.plots:
            lines += [f"![{path.rsplit('/', 1)[-1].removesuffix('.png').replace('_', ' ')}]({path})", ""]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, highlight: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = []
    for index, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cls = ' class="highlight"' if str(index) in highlight else ""
        cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in (index, *row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        parts += [html_table(frame, section.highlight) for frame in section.tables]
        if section.pre:
            parts.append(f"<pre>{html.escape(section.pre)}</pre>")
        for path, png in section.plots:
            data = base64.b64encode(png).decode()
            parts.append(f'<img alt="{html.escape(path)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts)
