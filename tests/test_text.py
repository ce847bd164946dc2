"""User-derived names render as the same characters, never as markup (markdown in Streamlit, HTML in Plotly)."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from core.text import basename, fmt_ids, megabytes
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


# --- core.text: the one-line message helpers core shares ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([3, 4, 7], "3, 4, 7"),
        ([1, 1, 2], "1, 2"),  # repeats shown once, first-seen order
        (range(1, 8), "1, 2, 3, 4, 5 (+2 more)"),
        ([], ""),
    ],
)
def test_fmt_ids(ids, expected):
    assert fmt_ids(ids) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b/c.jpg", "c.jpg"), ("a\\b\\c.jpg", "c.jpg"), ("C:\\x/y\\z.png", "z.png"), ("c.jpg", "c.jpg")],
)
def test_basename_takes_either_separator(name, expected):
    assert basename(name) == expected


@pytest.mark.parametrize(("n", "expected"), [(0, "0.0 MB"), (1536 * 1024, "1.5 MB"), (200 * 1024 * 1024, "200.0 MB")])
def test_megabytes(n, expected):
    assert megabytes(n) == expected
