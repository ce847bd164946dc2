"""Review: blind A/B review of two series of a stored run, or of a series in each of two runs, image by image from
the reviewer's queue."""

from __future__ import annotations

import streamlit as st

from core.compare.reviews import review_queue
from core.config import UNTRAINED_MARK
from core.store import StoreError
from dashboard import cache, reviewing, state
from dashboard.text import md

state.init()
st.title("Review")
st.caption(
    "Blind A/B: the two overlays are shown as Left and Right in a random order per image and reviewer; the models "
    "are named once the verdict is saved. Keys: 1 Left better, 2 Right better, 3 both wrong, 4 both fine, "
    "S skip, N next, U undo."
)
store = cache.store()
runs = store.list_runs()["run_id"].tolist()
if not runs:
    st.info("No stored run yet: review a run from the run store (Run page or `python -m core detect --store`).")
    st.stop()
pair = reviewing.choose_pair(runs, state.viewed_run())
reviewer = reviewing.reviewer_ui()
if reviewer is None:
    st.stop()

image_ids = reviewing.pair_images(pair)
pair_rows = reviewing.pair_reviews(pair)
mine = set(pair_rows.loc[pair_rows["reviewer"] == reviewer.name, "image_id"]) & set(image_ids)
st.progress(len(mine) / max(1, len(image_ids)), text=f"{len(mine)} of {len(image_ids)} reviewed by you")

skip_key, revealed_key, saved_key = f"review_skipped_{pair.key}", "review_revealed", "review_saved"
skipped = st.session_state.setdefault(skip_key, [])
revealed = st.session_state.get(revealed_key)
if revealed and revealed[0] != pair:
    revealed = st.session_state[revealed_key] = None
queue = review_queue(image_ids, pair_rows, reviewer.name, (pair.model_a, pair.model_b), skipped,
                     run_b=pair.stored_run_b)  # fmt: skip
focus = st.session_state.get("review_focus")  # the image an undo took back: judged again first
image_id = revealed[1] if revealed else (focus if focus in queue else (queue[0] if queue else None))
if image_id is None:
    st.success(f"All {len(image_ids)} images of this pair are reviewed by you, and no reviewers disagree.")
    st.stop()

left, right = reviewing.sides(image_id, reviewer.name, pair)
if reviewing.untrained_sides(pair):
    st.warning(UNTRAINED_MARK)
image = reviewing.image_of(image_id, pair)
if image is None or not image.ok:
    st.error("This image is not available for display.")
else:
    fig = reviewing.blind_overlay(image.image, image_id, left, right, state.threshold(), pair)
    st.plotly_chart(fig, key="review_overlay", config={"scrollZoom": True, "displaylogo": False})

if revealed:
    credited = {"Left better": left, "Right better": right}.get(revealed[2])
    said = f"{md(reviewing.side_name(credited, pair))} credited as better" if credited else md(revealed[2].lower())
    names = [md(reviewing.side_name(s, pair)) for s in (left, right)]
    st.success(f"Saved. Left was **{names[0]}**, Right was **{names[1]}**: {said}.")
    if st.button("Next", key="review_next", type="primary", shortcut="N"):
        st.session_state[revealed_key] = None
        st.rerun()
else:
    note = st.text_input("Note (optional)", key=f"review_note_{pair.key}_{image_id}", max_chars=2000)
    cols = st.columns(len(reviewing.CHOICES) + 1)
    for col, (label, key) in zip(cols, reviewing.CHOICES, strict=False):
        if col.button(f"{label} ({key})", key=f"review_choice_{key}", shortcut=key):
            try:
                verdict = reviewing.to_model_terms(label, left, pair.sides)
                reviewing.save_verdict(image_id, reviewer, verdict, note, pair)
            except StoreError as exc:
                st.error(md(exc))
            else:
                st.session_state[revealed_key] = (pair, image_id, label)
                st.session_state.pop("review_focus", None)
                st.session_state.setdefault(saved_key, []).append((pair, image_id))
                if image_id in skipped:
                    skipped.remove(image_id)
                st.rerun()
    if cols[-1].button("Skip (S)", key="review_skip", shortcut="S"):
        skipped.append(image_id)
        st.rerun()

saved = [s for s in st.session_state.get(saved_key, []) if s[0] == pair]
if saved and st.button("Undo last verdict (U)", key="review_undo", shortcut="U"):
    last = saved[-1]
    reviewing.undo(last[1], reviewer, pair)
    st.session_state[saved_key].remove(last)
    st.session_state[revealed_key] = None
    st.session_state["review_focus"] = last[1]
    st.rerun()
