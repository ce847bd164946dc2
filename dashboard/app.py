"""DetLens entry point: `streamlit run dashboard/app.py` from the repository root. Only the frame lives here."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on sys.path, not the repository root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import reviewing, state  # noqa: E402
from dashboard.pagelist import PAGES, page  # noqa: E402

# A multiselect keeps its chips on one line and scrolls them sideways: at 1280 px the Gallery's second model was cut
# off ("ssdlite32..."). Wrapped onto more lines instead, each chip as wide as the box if it needs, every chip is seen
# whole (a chip wider than the whole box still ends in "...").
APP_CSS = """<style>
[data-testid="stMultiSelect"] [role="group"]:has(> [data-testid="stMultiSelectTagsContainer"]) {
    height: auto; min-height: 40px; max-height: none;
}
[data-testid="stMultiSelect"] [data-testid="stMultiSelectTagsContainer"] {
    flex-wrap: wrap; height: auto; overflow-x: visible; row-gap: 2px;
}
[data-testid="stMultiSelect"] [data-testid="stMultiSelectTagsContainer"] [data-tag] { max-width: 100%; }
</style>"""

# A local icon: a :material/...: page icon makes the browser fetch its SVG from fonts.gstatic.com (an offline
# machine logs two net::ERR_NAME_NOT_RESOLVED console errors per page load).
st.set_page_config(page_title="DetLens", page_icon=str(ROOT / "dashboard" / "favicon.png"), layout="wide")
st.html(APP_CSS)  # style only: drawn nowhere, applied to every page
state.init()
reviewing.gate()  # with sign-in set up: nothing below runs for a visitor or a user outside the allowlist
navigation = st.navigation([page(p.path) for p in PAGES])
state.sidebar_settings()
navigation.run()
