"""Reviewing in the dashboard: who reviews (OpenID Connect sign-in, or a typed name marked unverified), the sign-in
gate of every page, the blind Left/Right view of a pair, saving and undoing verdicts.

Sign-in is on when `.streamlit/secrets.toml` has an `[auth]` section (Streamlit's `st.login`, OpenID Connect). Then
every page needs a signed-in user, and `[detlens] allowed_users` (emails, or `@domain` for a whole domain; empty or
absent: anyone the provider signs in) keeps everyone else out of every page. Reviews are stored under the user's
email, marked "signed-in". Without `[auth]`, a reviewer types a name: stored and shown as "typed" (unverified).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.compare.reviews import left_is_a, runs_of
from core.config import REVIEW_WITHDRAWN
from core.records import models_in
from core.store import REVIEW_COLUMNS
from core.store.reviews import canonical_sides
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

Side = tuple[str, str]  # (run_id, model): one series of one run
SAME_RUN, TWO_RUNS = "Two series of one run", "One series in each of two runs"


@dataclass(frozen=True)
class Pair:
    """What is reviewed: model_a of run_a vs model_b of run_b (run_b == run_a within one run), in the store's
    sorted order; `key` names it in widget keys (no model name, no run id needed to read it)."""

    run_a: str
    model_a: str
    run_b: str
    model_b: str
    key: str

    @property
    def cross(self) -> bool:
        return self.run_a != self.run_b

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.run_a, self.model_a), (self.run_b, self.model_b)

    @property
    def stored_run_b(self) -> str:
        """run_b as the store keeps it ('' within one run)."""
        return self.run_b if self.cross else ""


def pairs_of(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of a run's series, each in sorted order (the store's terms)."""
    models = list(dict.fromkeys(models))
    return [tuple(sorted((a, b))) for i, a in enumerate(models) for b in models[i + 1 :]]


def blind_pair_label(index: int, pair: tuple[str, str], models: Sequence[str]) -> str:
    """A pair without model names: "Pair 1: series 1 vs series 2" (series numbered in the run's order)."""
    order = list(models)
    return f"Pair {index + 1}: series {order.index(pair[0]) + 1} vs series {order.index(pair[1]) + 1}"


def cross_pair(run_x: str, model_x: str, run_y: str, model_y: str) -> Pair:
    """model_x of run_x vs model_y of run_y, in the store's order (the side that sorts first is A)."""
    run_a, model_a, run_b, model_b, _ = canonical_sides(run_x, model_x, run_y, model_y, "")
    digest = hashlib.sha256("\0".join((run_a, model_a, run_b, model_b)).encode("utf-8")).hexdigest()
    return Pair(run_a, model_a, run_b, model_b, key=f"x{digest[:10]}")


def choose_pair(runs: Sequence[str], viewed: str | None) -> Pair:
    """The pair to review (widgets): two series of one run, or a series of each of two runs. A cross-run pair is
    chosen with its names, then started: while it is reviewed the choice is folded away, so that neither model
    names nor run ids are on the page before a verdict (the sidebar goes back to the session's results). Stops the page when there is nothing to review."""
    active: Pair | None = st.session_state.get(CROSS_KEY)
    if active is not None:
        st.info("Blind review of one series in each of two runs: the runs and models are named after each verdict.")
        if st.button("Choose another pair", key="review_change"):
            st.session_state[CROSS_KEY] = None
            st.rerun()
        return active
    mode = st.radio("Compare", (SAME_RUN, TWO_RUNS), horizontal=True, key="review_mode")
    c1, c2 = st.columns(2)
    run_id = c1.selectbox("Run", runs, index=runs.index(viewed) if viewed in runs else 0, key="review_run")
    models = models_in(cache.run_tables(run_id)[0])
    if mode == SAME_RUN:
        pairs = pairs_of(models)
        if not pairs:
            st.info("This run has one series: a blind review needs two (or compare it with another run).")
            st.stop()
        k = c2.selectbox("Pair", range(len(pairs)), format_func=lambda i: blind_pair_label(i, pairs[i], models),
                         key="review_pair")  # fmt: skip
        return Pair(run_id, pairs[k][0], run_id, pairs[k][1], key=f"{run_id}_{k}")
    others = [r for r in runs if r != run_id]
    if not others:
        st.info("One stored run only: a review across runs needs two.")
        st.stop()
    other = c2.selectbox("Other run", others, key="review_other_run")
    other_models = models_in(cache.run_tables(other)[0])
    m1, m2 = st.columns(2)
    model_x = m1.selectbox(f"Series of run {run_id}", models, key="review_model_x")
    same = other_models.index(model_x) if model_x in other_models else 0
    model_y = m2.selectbox(f"Series of run {other}", other_models, index=same, key="review_model_y")
    st.caption("Starting folds this choice away: the runs and models stay hidden until each verdict is saved.")
    if st.button("Start blind review", key="review_start", type="primary"):
        st.session_state[CROSS_KEY] = cross_pair(run_id, model_x, other, model_y)
        state.view_run(None)  # the sidebar names the viewed run: back to the session while the runs are hidden
        st.rerun()
    st.stop()


CROSS_KEY = "review_cross_pair"


def pair_images(pair: Pair) -> list[str]:
    """The images both series measured without error (matched by content id), in run A's name order."""
    ids: list[set[str]] = []
    names: dict[str, str] = {}
    for run, model in pair.sides:
        inf = cache.run_tables(run)[0]
        ok = inf[(inf["error"] == "") & (inf["model"] == model) & (inf["image_id"] != "")]
        ids.append(set(ok["image_id"]))
        for image_id, name in zip(ok["image_id"], ok["image_name"], strict=True):
            names.setdefault(str(image_id), str(name))
    return sorted(ids[0] & ids[1], key=lambda i: (names[i], i))


def pair_reviews(pair: Pair) -> pd.DataFrame:
    """The current verdicts on this pair (stored under run A)."""
    reviews = run_reviews(pair.run_a)
    keep = (reviews["model_a"] == pair.model_a) & (reviews["model_b"] == pair.model_b)
    return reviews[keep & (reviews["run_b"].fillna("") == pair.stored_run_b)]


def sides(image_id: str, reviewer: str, pair: Pair) -> tuple[Side, Side]:
    """(left, right) series for this image and reviewer: random, and the same on every visit."""
    a, b = pair.sides
    if pair.cross:
        left_a = left_is_a("", image_id, reviewer, "\0".join(a), "\0".join(b))
    else:
        left_a = left_is_a(pair.run_a, image_id, reviewer, pair.model_a, pair.model_b)
    return (a, b) if left_a else (b, a)


def side_name(side: Side, pair: Pair) -> str:
    """A series as the reveal names it: the model, with its run across runs."""
    return f"{side[1]} (run {side[0]})" if pair.cross else side[1]


def to_model_terms(choice: str, left: object, pair: Sequence[object]) -> str:
    """A Left/Right choice as the store's verdict about pair (A = pair[0]; sides or model names)."""
    if choice in ("Both wrong", "Both fine"):
        return choice.lower()
    better = left if choice == "Left better" else next(m for m in pair if m != left)
    return "A better" if better == pair[0] else "B better"


def untrained_sides(pair: Pair) -> set[Side]:
    """The pair's series measured with untrained weights."""
    out = set()
    for run, model in pair.sides:
        inf = cache.run_tables(run)[0]
        if (inf.loc[inf["model"] == model, "weights"] == "untrained").any():
            out.add((run, model))
    return out


def blind_overlay(
    image: Image.Image, image_id: str, left: Side, right: Side, threshold: float, pair: Pair
) -> go.Figure:
    """The two overlays titled Left and Right, each from its own run's detections: no model name in the figure."""
    parts = []
    for side_title, (run, model) in zip(SIDES, (left, right), strict=True):
        det = cache.run_tables(run)[1]
        part = det[(det["image_id"] == image_id) & (det["model"] == model)].copy()
        part["model"] = side_title
        parts.append(part)
    hidden = {t for t, s in zip(SIDES, (left, right), strict=True) if s in untrained_sides(pair)}
    return figures.overlay_grid(image, pd.concat(parts, ignore_index=True), list(SIDES), threshold=threshold,
                                untrained_models=hidden)  # fmt: skip


def image_of(image_id: str, pair: Pair):
    """The image (from run A's images, else run B's), or None."""
    for run in dict.fromkeys((pair.run_a, pair.run_b)):
        images = cache.run_tables(run)[2]
        if image_id in images:
            return cache.full_image(image_id, images[image_id])
    return None


def save_verdict(image_id: str, reviewer: Reviewer, verdict: str, note: str, pair: Pair) -> None:
    """Store a verdict in model terms (StoreError for a bad one)."""
    cache.store().add_review(pair.run_a, image_id, reviewer.name, verdict, note, model_a=pair.model_a,
                             model_b=pair.model_b, identity=reviewer.identity, run_b=pair.stored_run_b)  # fmt: skip


def undo(image_id: str, reviewer: Reviewer, pair: Pair) -> None:
    """Take back the reviewer's latest verdict on this image and pair: the one before it counts again (a new row
    repeating it), or none (a withdrawal row). History is kept either way."""
    history = cache.store().reviews(pair.run_a, history=True)
    mine = history[
        (history["image_id"] == image_id)
        & (history["reviewer"] == reviewer.name)
        & (history["model_a"] == pair.model_a)
        & (history["model_b"] == pair.model_b)
        & (history["run_b"].fillna("") == pair.stored_run_b)
    ]
    before = mine.iloc[-2] if len(mine) >= 2 else None
    if before is not None and before["verdict"] != REVIEW_WITHDRAWN:
        save_verdict(image_id, reviewer, str(before["verdict"]), str(before["note"]), pair)
    else:
        save_verdict(image_id, reviewer, REVIEW_WITHDRAWN, "", pair)


def run_reviews(run_id: str, *, as_run_b: bool = False) -> pd.DataFrame:
    """The run's current reviews (with `as_run_b`, also the cross-run pairs where it is run B); an empty frame with
    the columns when the run is not stored."""
    store = cache.store()
    if not store.has_run(run_id):
        return pd.DataFrame(columns=list(REVIEW_COLUMNS))
    return store.reviews(run_id, as_run_b=as_run_b)


def review_detections(run_id: str, reviews: pd.DataFrame) -> pd.DataFrame:
    """The detections of the run and of every other stored run its reviews name (for the per-class results)."""
    store = cache.store()
    runs = [r for r in dict.fromkeys([run_id, *runs_of(reviews)]) if store.has_run(r)]
    return pd.concat([cache.run_tables(r)[1] for r in runs], ignore_index=True)
