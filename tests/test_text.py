"""User-derived names render as the same characters, never as markup (markdown in Streamlit, HTML in Plotly)."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from dashboard.figures import plain
from dashboard.text import md

HOSTILE = [
    "<img src=x onerror=alert(1)>.png",
    "![pixel](http://example.com/track.png).jpg",
    "[click](javascript:alert(1)).png",
    "**bold** _it_ `code` ~~gone~~.png",
    "# heading.png",
    ":red[colour] :material/home: :smile:.jpg",
    "$x^2$ and $$y$$.png",
    "1. list.png",
    "- item | table | row.png",
    "back\\slash\\*.png",
    "plain_name-01.JPG",
]


def rendered_text(markdown: str) -> tuple[str, str]:
    """(visible text, raw html) of CommonMark rendering."""
    out = MarkdownIt("commonmark").render(markdown)
    return html.unescape(re.sub(r"<[^>]+>", "", out)).strip(), out


@pytest.mark.parametrize("name", HOSTILE)
def test_markdown_escaped_names_render_as_themselves(name):
    text, raw = rendered_text(md(name))
    assert text == name
    assert "<img" not in raw and "<a " not in raw and "<strong" not in raw and "<em" not in raw and "<h1" not in raw


def test_md_keeps_one_line():
    assert md("a\nb\r\n  c") == "a b c"


@pytest.mark.parametrize("name", HOSTILE)
def test_plotly_text_is_html_escaped(name):
    assert "<" not in plain(name) and html.unescape(plain(name)) == name
