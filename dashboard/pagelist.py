"""The pages of the app, in menu order, and the `st.Page` objects the frame, links and page switches share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PageDef:
    path: str  # relative to the repository root
    title: str
    icon: str
    default: bool = False


PAGES: tuple[PageDef, ...] = (
    PageDef("pages/home.py", "Home", ":material/home:", default=True),
    PageDef("pages/run.py", "Run", ":material/play_arrow:"),
    PageDef("pages/live.py", "Live", ":material/videocam:"),
    PageDef("pages/gallery.py", "Gallery", ":material/photo_library:"),
    PageDef("pages/compare.py", "Compare", ":material/monitoring:"),
    PageDef("pages/evaluate.py", "Evaluate", ":material/fact_check:"),
    PageDef("pages/data.py", "Data", ":material/table:"),
    PageDef("pages/runs.py", "Runs", ":material/history:"),
    PageDef("pages/review.py", "Review", ":material/rate_review:"),
    PageDef("pages/reviews.py", "Reviews", ":material/how_to_vote:"),
)


def page(path: str) -> st.Page:
    """The `st.Page` for a page of PAGES (usable in st.navigation, st.page_link and st.switch_page)."""
    d = next(p for p in PAGES if p.path == path)
    return st.Page(str(ROOT / d.path), title=d.title, icon=d.icon, default=d.default)
