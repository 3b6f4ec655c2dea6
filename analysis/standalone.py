"""report.html: the whole report as one self-contained page to mail or attach. report.md rendered to HTML
(markdown-it, with its tables), every PNG inlined as a data URI, every interactive figure embedded (where
the report shows its picture, else at the end, its links pointing there), and plotly.js inlined once: the
page fetches nothing when it is viewed."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path

import plotly.graph_objects as go
import plotly.offline
from markdown_it import MarkdownIt

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "img{max-width:100%}code{background:#f4f4f4;padding:0 3px}")


def _inline_png(match: re.Match, out: Path) -> str:
    data = base64.b64encode((out / match[1]).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}"'


def standalone_html(markdown: str, out: Path, figures: Mapping[str, go.Figure], title: str) -> str:
    """The page for report.md's text `markdown`, its images read from `out`, `figures` by file stem."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    body = re.sub(r'<img src="([\w.-]+\.png)"', lambda m: _inline_png(m, out), body)
    rest = []
    for stem, fig in figures.items():  # "Interactive: [stem.html](stem.html)" becomes the figure itself
        div, link = fig.to_html(full_html=False, include_plotlyjs=False, div_id=stem), (
            f'<p>Interactive: <a href="{stem}.html">{stem}.html</a></p>')
        if link in body:
            body = body.replace(link, div)
        else:  # linked from a list (the per-task fronts): after the text, where the links point
            rest.append(div)
    if rest:
        body += "<h2>Interactive figures</h2>\n" + "\n".join(rest)
    body = re.sub(r'href="([\w-]+)\.html"', r'href="#\1"', body)  # links to a figure's page: to the figure
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head>\n"
            f"<body>\n{body}</body></html>\n")
