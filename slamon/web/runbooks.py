"""`/runbooks`: the runbooks of docs/runbooks.md (shipped as package data), as HTML.

The generated alerts link here by default, so their `runbook_url` works with no
wiki. The Markdown is ours and uses a small subset (headings, paragraphs, lists,
code, links, emphasis); the renderer handles that subset and escapes the rest.
Heading ids follow GitHub's rule, so the same anchors work on the docs page.
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources

_INLINE_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def _inline(text: str) -> str:
    out: list[str] = []
    pos = 0
    # code spans first: nothing inside them is markup
    for m in _INLINE_CODE.finditer(text):
        out.append(_links(text[pos:m.start()]))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        pos = m.end()
    out.append(_links(text[pos:]))
    return "".join(out)


def _links(text: str) -> str:
    escaped = html.escape(text)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)

    def link(m: re.Match[str]) -> str:
        href = m.group(2)
        if href.endswith(".md") or ".md#" in href:
            href = "#" + href.partition("#")[2] if ".md#" in href else href
        return f'<a href="{href}">{m.group(1)}</a>'

    return _LINK.sub(link, escaped)


def render_markdown(text: str, title: str) -> str:
    """The HTML page of `text`, a Markdown document in the subset above."""
    body: list[str] = []
    para: list[str] = []
    items: list[str] = []
    kind = ""  # "ul" or "ol" while a list is open
    code: list[str] | None = None

    def flush() -> None:
        nonlocal kind
        if para:
            body.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            body.append(f"<{kind}>" + "".join(f"<li>{_inline(i)}</li>" for i in items)
                        + f"</{kind}>")
            items.clear()
            kind = ""

    for line in text.splitlines():
        if code is not None:
            if line.startswith("```"):
                body.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            flush()
            code = []
            continue
        heading = re.match(r"^(#{1,6}) (.+)$", line)
        numbered = re.match(r"^\d+\. (.*)$", line)
        item = numbered or re.match(r"^[-*] (.*)$", line)
        if heading:
            flush()
            level, words = len(heading.group(1)), heading.group(2)
            body.append(f'<h{level} id="{anchor(words)}">{_inline(words)}</h{level}>')
        elif item:
            new_kind = "ol" if numbered else "ul"
            if para or (kind and kind != new_kind):
                flush()
            kind = new_kind
            items.append(item.group(1))
        elif not line.strip():
            flush()
        elif items and line.startswith("   "):
            items[-1] += " " + line.strip()
        else:
            para.append(line.strip())
    flush()
    if code is not None:  # an unclosed fence: show it rather than lose it
        body.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.5}code{background:#f3f3f3;padding:0 .2em}"
        "pre{background:#f3f3f3;padding:.5rem;overflow:auto}</style>"
        "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


@cache
def runbooks_page() -> str:
    text = resources.files("slamon").joinpath("data", "runbooks.md").read_text("utf-8")
    return render_markdown(text, "slamon runbooks")
