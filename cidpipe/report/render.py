"""A report is a list of blocks; one renderer writes Markdown, the other a single self-contained HTML file."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

from cidpipe.report.tables import Table


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Lead:
    """The sentence a reader should see first (the headline), rendered prominently."""

    text: str


@dataclass
class Verdict:
    passed: bool
    text: str


@dataclass
class Image:
    file_name: str
    png: bytes
    alt: str


@dataclass
class Collapsible:
    summary: str
    text: str
    language: str = ""


Block = Heading | Paragraph | Lead | Verdict | Image | Collapsible | Table


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Lead):
            lines += [f"**{block.text}**", ""]
        elif isinstance(block, Verdict):
            lines += [("✅ " if block.passed else "❌ ") + f"**{block.text}**", ""]
        elif isinstance(block, Image):
            lines += [f"![{block.alt}]({block.file_name})", ""]
        elif isinstance(block, Collapsible):
            fence = "````" if "```" in block.text else "```"
            lines += [f"<details><summary>{html.escape(block.summary)}</summary>", ""]
            lines += [f"{fence}{block.language}", block.text.rstrip("\n"), fence, "", "</details>", ""]
        elif isinstance(block, Table):
            lines += [f"**{block.title}**", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines)


STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;background:#fff;
  max-width:1180px;margin:2rem auto;padding:0 1.2rem;line-height:1.45;font-size:15px}
h1{font-size:1.6rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #eaeef2;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
.table-wrap{overflow-x:auto;margin:.4rem 0 1rem}
table{border-collapse:collapse;font-size:.86rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.2rem 0 .4rem}
th,td{border:1px solid #d0d7de;padding:.28rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
tr.fail td{background:#fff1f0}
td.num{text-align:right}
.verdict{padding:.6rem .9rem;border-radius:6px;font-weight:600;margin:.6rem 0}
.verdict.pass{background:#dafbe1;border:1px solid #4ac26b}
.verdict.fail{background:#ffebe9;border:1px solid #ff8182}
img{max-width:100%;height:auto;border:1px solid #eaeef2;border-radius:4px;margin:.4rem 0}
details{margin:.5rem 0}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.8rem;border-radius:6px;overflow-x:auto;font-size:.82rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:#59636e;font-size:.85rem}
.lead{font-size:1.1rem;font-weight:600;margin:.5rem 0}
.ok{color:#1a7f37;font-weight:600;white-space:nowrap}
.bad{color:#cf222e;font-weight:600;white-space:nowrap}
"""


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(" MB", "").replace("±", "").split(" ")[0].lstrip("+-")
    return stripped.replace(".", "", 1).isdigit()


# Emoji fonts are often missing (headless browsers, CI); text marks from common fonts always render.
MARKS = {
    "✅": '<span class="ok">✓ pass</span>',
    "❌": '<span class="bad">✗ fail</span>',
    "⚪ not comparable": '<span class="muted">○ not comparable</span>',
}


def _html_cell(cell: str) -> str:
    if cell in MARKS:
        return f"<td>{MARKS[cell]}</td>"
    if _looks_numeric(cell):
        return f'<td class="num">{html.escape(cell)}</td>'
    return f"<td>{html.escape(cell)}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for index, row in enumerate(table.rows):
        cells = "".join(_html_cell(cell) for cell in row)
        css = ' class="fail"' if index in table.failed_rows else ""
        rows.append(f"<tr{css}>{cells}</tr>")
    return (f'<div class="table-wrap"><table><caption>{html.escape(table.title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def render_html(blocks: list[Block], title: str) -> str:
    """One file: inline CSS, PNGs as base64 data URIs, every piece of text escaped."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            parts.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            parts.append(f'<p class="muted">{html.escape(block.text)}</p>')
        elif isinstance(block, Lead):
            parts.append(f'<p class="lead">{html.escape(block.text)}</p>')
        elif isinstance(block, Verdict):
            css = "pass" if block.passed else "fail"
            mark = "✓" if block.passed else "✗"
            parts.append(f'<div class="verdict {css}">{mark} {html.escape(block.text)}</div>')
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
        elif isinstance(block, Collapsible):
            parts.append(f"<details><summary>{html.escape(block.summary)}</summary>"
                         f"<pre><code>{html.escape(block.text)}</code></pre></details>")  # fmt: skip
        elif isinstance(block, Table):
            parts.append(_html_table(block))
    body = "\n".join(parts)
    head = (
        '<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>"
    )
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'
