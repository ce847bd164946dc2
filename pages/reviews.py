"""Reviews: a stored run's review results (its pairs and its cross-run pairs): wins per pair with the Wilson interval,
agreement, per class, disagreements."""

from __future__ import annotations

import streamlit as st

from core.compare.reviews import disagreements, summarize
from core.config import REVIEW_CONFIDENCE
from dashboard import cache, review_tables, reviewing, state, widgets
from dashboard.pagelist import page
from dashboard.text import md

state.init()
st.title("Reviews")
store = cache.store()
stored = store.list_runs()
runs = stored["run_id"].tolist()
names = widgets.run_labels(stored)
if not runs:
    st.info("No stored run yet.")
    st.stop()
viewed = state.viewed_run()
run_id = st.selectbox(
    "Run", runs, index=runs.index(viewed) if viewed in runs else 0, key="reviews_run", format_func=lambda r: names[r]
)
st.page_link(page("pages/review.py"), label="Review this run (blind A/B)")
reviews = reviewing.run_reviews(run_id, as_run_b=True)  # its pairs, and the cross-run pairs it is part of
if reviews.empty:
    st.info("No review of this run yet.")
    st.stop()
summary = summarize(run_id, reviews, reviewing.review_detections(run_id, reviews), state.threshold())
if summary.unverified:
    st.warning(
        f"Unverified reviewers (a typed name, no sign-in): {md(', '.join(summary.unverified))}. "
        "Set up sign-in (docs/reviews.md) for reviews that name who said what."
    )
pct = f"{REVIEW_CONFIDENCE:.0%}"
st.subheader("Per pair")
st.caption(
    f"Pairs of this run's series, and of a series of it with one of another run (\"model (run X) vs model (run "
    f"Y)\"). Every reviewer's current verdict counts once. Win rate: A's wins / (A's wins + B's wins), ties and 'both "
    f"wrong' left out; {pct} Wilson interval, e.g. 62% (48-74%)."
)
pairs = review_tables.pair_table(summary.pairs, summary.agreement)
st.dataframe(pairs, hide_index=True, column_config=review_tables.PAIR_CONFIG, column_order=review_tables.PAIR_ORDER)
st.subheader("Agreement between reviewers")
st.caption("Cohen's kappa for two reviewers (images both judged), Krippendorff's alpha (nominal) for more.")
st.dataframe(
    review_tables.agreement_table(summary.agreement), hide_index=True,
    column_config=review_tables.AGREEMENT_CONFIG, column_order=review_tables.AGREEMENT_ORDER,
)  # fmt: skip
st.subheader("Per class")
st.caption(f"Verdicts on the images where either model found the class (score ≥ {state.threshold():.2f}).")
classes = review_tables.pair_table(summary.classes, summary.agreement.iloc[0:0])
st.dataframe(classes, hide_index=True, column_config=review_tables.PAIR_CONFIG, column_order=review_tables.CLASS_ORDER)
st.subheader("Where reviewers disagree")
if summary.disagreements.empty:
    st.caption("Nowhere.")
else:
    st.dataframe(disagreements(reviewing.labelled(reviews)), hide_index=True)
with st.expander("Every verdict (notes as written), with the history"):
    history = st.toggle("Whole history (changes and undos)", key="reviews_history")
    rows = store.reviews(run_id, history=True, as_run_b=True) if history else reviews
    st.dataframe(reviewing.labelled(rows), hide_index=True)
