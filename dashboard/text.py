"""User-derived text (file names, class names, error messages that quote them) shown as text, never as markup."""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be backslash-escaped; Streamlit adds :emoji:, :color[...]: and $math$ to it.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md(text: object) -> str:
    """`text` escaped for st.markdown/caption/error/info/progress: it renders as the same characters, on one line."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
