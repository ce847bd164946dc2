"""Reviewing in the dashboard: who reviews (OpenID Connect sign-in, or a typed name marked unverified), the sign-in
gate of every page, the blind Left/Right view of a pair, saving and undoing verdicts.

Sign-in is on when `.streamlit/secrets.toml` has an `[auth]` section (Streamlit's `st.login`, OpenID Connect). Then
every page needs a signed-in user, and `[detlens] allowed_users` (emails, or `@domain` for a whole domain; empty or
absent: anyone the provider signs in) keeps everyone else out of every page. Reviews are stored under the user's
email, marked "signed-in". Without `[auth]`, a reviewer types a name: stored and shown as "typed" (unverified).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.config import REVIEW_WITHDRAWN
from core.reviews import left_is_a
from core.store import REVIEW_COLUMNS
from dashboard import cache, figures, state
from dashboard.text import md

SIDES = ("Left", "Right")
CHOICES: tuple[tuple[str, str], ...] = (  # (button label, keyboard shortcut)
    ("Left better", "1"), ("Right better", "2"), ("Both wrong", "3"), ("Both fine", "4"),
)  # fmt: skip
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Reviewer:
    """Who is reviewing: `name` is what the store keeps (the email when signed in)."""

    name: str
    display: str
    identity: str  # "signed-in" | "typed"


# --- who is reviewing ----------------------------------------------------------------------------------------------


def auth_configured() -> bool:
    """Whether `[auth]` is in the secrets (sign-in with OpenID Connect is on)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file, or one that does not parse: no sign-in
        return False


def allowlist() -> list[str]:
    """`[detlens] allowed_users` from the secrets, lower-cased (empty: everyone the provider signs in)."""
    try:
        value = st.secrets.get("detlens", {}).get("allowed_users", [])
    except Exception:
        return []
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(v).strip().lower() for v in items if str(v).strip()]


def is_allowed(email: str, allowed: Sequence[str]) -> bool:
    """An email is allowed when the list is empty, names it, or names its domain as `@domain`."""
    email = (email or "").strip().lower()
    if not allowed:
        return bool(email)
    if not email or email.count("@") != 1:
        return False
    domain = "@" + email.split("@")[1]
    return email in allowed or domain in allowed


def _logged_in() -> bool:
    """Whether Streamlit vouches for a signed-in user (its identity cookie, signed with the cookie secret)."""
    return st.user.get("is_logged_in") is True


def _signed_in() -> tuple[str, str] | None:
    """(email, name) of the signed-in, allowed user; None otherwise."""
    if not _logged_in():
        return None
    email = str(st.user.get("email") or "").strip()
    if not is_allowed(email, allowlist()):
        return None
    return email, str(st.user.get("name") or email)


def gate() -> None:
    """With sign-in on: a sign-in page for visitors, a refusal for users outside the allowlist (nothing else of the
    app runs for either), the user's name and a sign-out button in the sidebar for the rest."""
    if not auth_configured():
        return
    if not _logged_in():
        st.title("DetLens")
        st.info("Sign in to use this DetLens.")
        if st.button("Sign in", key="auth_login", type="primary"):
            st.login()
        st.stop()
    who = _signed_in()
    if who is None:
        st.title("DetLens")
        st.error(f"Access refused: {md(st.user.get('email') or 'this account')} is not allowed in this DetLens.")
        if st.button("Sign out", key="auth_logout_refused"):
            st.logout()
        st.stop()
    st.sidebar.markdown(f"Signed in as **{md(who[1])}**")
    if st.sidebar.button("Sign out", key="auth_logout"):
        st.logout()


def current_reviewer() -> Reviewer | None:
    """The reviewer of this session, or None when nobody may write a review: with sign-in on, the signed-in and
    allowed user only (a typed name is never used); otherwise the typed name."""
    if auth_configured():
        who = _signed_in()
        return Reviewer(who[0], who[1], "signed-in") if who else None
    name = state.reviewer()
    return Reviewer(name, name, "typed") if name else None


def reviewer_ui() -> Reviewer | None:
    """Who reviews: the signed-in user, or a name input (marked unverified) when sign-in is not set up."""
    if not auth_configured():
        st.text_input("Your name (unverified: sign-in is not set up)", key=state.REVIEWER_KEY)
    reviewer = current_reviewer()
    if reviewer is None:
        st.info("Sign in to review." if auth_configured() else "Type your name to review.")
    return reviewer


def reviewer_label(name: object, identity: object) -> str:
    """A reviewer as every view shows them: typed names carry "(unverified)"."""
    return f"{name}" if identity == "signed-in" else f"{name} ({UNVERIFIED})"


def labelled(reviews: pd.DataFrame) -> pd.DataFrame:
    """Reviews with the reviewer column as `reviewer_label` shows it."""
    out = reviews.copy()
    out["reviewer"] = [reviewer_label(n, i) for n, i in zip(out["reviewer"], out["identity"], strict=True)]
    return out


# --- the blind pair ------------------------------------------------------------------------------------------------


def pairs_of(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of a run's series, each in sorted order (the store's terms)."""
    models = list(dict.fromkeys(models))
    return [tuple(sorted((a, b))) for i, a in enumerate(models) for b in models[i + 1 :]]


def pair_label(index: int, pair: tuple[str, str], models: Sequence[str]) -> str:
    """A pair without model names: "Pair 1: series 1 vs series 2" (series numbered in the run's order)."""
    order = list(models)
    return f"Pair {index + 1}: series {order.index(pair[0]) + 1} vs series {order.index(pair[1]) + 1}"


def sides(run_id: str, image_id: str, reviewer: str, pair: tuple[str, str]) -> tuple[str, str]:
    """(left model, right model) for this image and reviewer: random, and the same on every visit."""
    a, b = pair
    return (a, b) if left_is_a(run_id, image_id, reviewer, a, b) else (b, a)


def to_model_terms(choice: str, left: str, pair: tuple[str, str]) -> str:
    """A Left/Right choice as the store's verdict about pair (A = pair[0])."""
    if choice in ("Both wrong", "Both fine"):
        return choice.lower()
    better = left if choice == "Left better" else next(m for m in pair if m != left)
    return "A better" if better == pair[0] else "B better"


def blind_overlay(
    image: Image.Image, detections: pd.DataFrame, left: str, right: str, threshold: float, untrained: set[str]
) -> go.Figure:
    """The two overlays titled Left and Right: no model name in the figure."""
    det = detections[detections["model"].isin([left, right])].copy()
    det["model"] = det["model"].map({left: SIDES[0], right: SIDES[1]})
    hidden = {side for side, m in zip(SIDES, (left, right), strict=True) if m in untrained}
    return figures.overlay_grid(image, det, list(SIDES), threshold=threshold, untrained_models=hidden)


def save(run_id: str, image_id: str, reviewer: Reviewer, verdict: str, note: str, pair: tuple[str, str]) -> None:
    """Store a verdict in model terms (StoreError for a bad one)."""
    cache.store().add_review(
        run_id, image_id, reviewer.name, verdict, note, model_a=pair[0], model_b=pair[1], identity=reviewer.identity
    )


def undo(run_id: str, image_id: str, reviewer: Reviewer, pair: tuple[str, str]) -> None:
    """Take back the reviewer's latest verdict on this image and pair: the one before it counts again (a new row
    repeating it), or none (a withdrawal row). History is kept either way."""
    history = cache.store().reviews(run_id, history=True)
    mine = history[
        (history["image_id"] == image_id)
        & (history["reviewer"] == reviewer.name)
        & (history["model_a"] == pair[0])
        & (history["model_b"] == pair[1])
    ]
    before = mine.iloc[-2] if len(mine) >= 2 else None
    if before is not None and before["verdict"] != REVIEW_WITHDRAWN:
        save(run_id, image_id, reviewer, str(before["verdict"]), str(before["note"]), pair)
    else:
        save(run_id, image_id, reviewer, REVIEW_WITHDRAWN, "", pair)


def run_reviews(run_id: str) -> pd.DataFrame:
    """The run's current reviews (empty frame with the columns when the run is not stored)."""
    store = cache.store()
    return store.reviews(run_id) if store.has_run(run_id) else pd.DataFrame(columns=list(REVIEW_COLUMNS))
