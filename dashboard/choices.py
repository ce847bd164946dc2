"""Form choices that stay for the session: a widget keeps its value when its page is left and opened again.

Streamlit forgets a widget's value once its page is left (the widget is unmounted and its key removed). `kept()` draws a
widget whose value is also copied under a key of our own (`detlens_keep_<key>`), and restores the widget's key from
that copy before drawing it again; the widget then takes its value from session state alone (no `default=`/`value=`
argument, so Streamlit never warns about two sources). File uploaders and the camera cannot be restored this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

KEEP_PREFIX = "detlens_keep_"


def keep_key(key: str) -> str:
    """The session-state key under which the widget `key`'s value is kept."""
    return KEEP_PREFIX + key


def _valid(value: Any, options: Sequence[Any] | None, many: bool) -> bool:
    if options is None:
        return True
    if many:
        return isinstance(value, list | tuple) and all(v in options for v in value)
    return value in options


def restore(key: str, default: Any, *, options: Sequence[Any] | None = None, many: bool = False) -> None:
    """Before drawing widget `key`: give it the kept value (or `default` the first time). A kept value no longer among
    `options` falls back to `default`."""
    ss = st.session_state
    if key in ss and _valid(ss[key], options, many):
        return
    kept_value = ss.get(keep_key(key), default)
    ss[key] = kept_value if _valid(kept_value, options, many) else default


def remember(key: str, value: Any) -> None:
    """Keep widget `key`'s value for the session (also set it from callbacks, e.g. a way-out button)."""
    st.session_state[keep_key(key)] = value


def set_choice(key: str, value: Any) -> None:
    """Change a kept choice from a callback: the widget (if drawn later in this run) and its kept copy agree."""
    st.session_state[key] = value
    remember(key, value)


def kept(
    draw: Callable[..., Any],
    label: str,
    *args: Any,
    key: str,
    default: Any,
    options: Sequence[Any] | None = None,
    many: bool = False,
    **kwargs: Any,
) -> Any:
    """Draw `draw(label, *args, key=key, **kwargs)` (st.selectbox, col.multiselect, ...) with its value kept for the
    session; `options` (passed on to the widget) guards a kept value that is no longer offered."""
    restore(key, default, options=options, many=many)
    value = draw(label, *args, key=key, **kwargs) if options is None else draw(label, options, *args, key=key, **kwargs)
    remember(key, list(value) if isinstance(value, tuple) else value)
    return value
