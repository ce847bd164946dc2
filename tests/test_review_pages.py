"""The Review page (blind A/B with the queue), the Reviews page (results) and the sign-in gate, driven by AppTest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.compare.reviews import left_is_a
from core.config import GALLERY_DIR, UNTRAINED_MARK
from core.images import ImageSource
from core.store import Store
from dashboard.reviewing import is_allowed, to_model_terms
from tests.test_store import CREATED, THRESHOLD, make_result, run_info

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
RUN = "20260101-000000-review"
A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"  # sorted: A is the pair's model_a
PHOTOS = ("cat.jpg", "coffee.jpg", "dog.jpg")


def stored_pair_run(store_dir: Path) -> list[str]:
    """A stored run of two series over three gallery photos (seeded boxes); its image ids in name order."""
    store = Store(store_dir)
    store.start_run(run_info(RUN, models=(A, B)))
    ids = []
    for k, name in enumerate(PHOTOS):
        source = ImageSource.from_path(GALLERY_DIR / name).hashed()
        store.put_image(source, run_id=RUN)
        ids.append(source.image_id)
        for model in (A, B):
            r = dataclasses.replace(make_result(k, model), image_id=source.image_id, image_name=name)
            store.add_result(RUN, r, threshold=THRESHOLD, created_at=CREATED)
    store.finish_run(RUN)
    return ids


def open_page(page: str, **secrets) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = RUN
    for key, value in secrets.items():
        at.secrets[key] = value
    at.run()
    at.switch_page(f"../{page}")
    at.query_params["run"] = RUN
    return at.run()


def page_text(at: AppTest) -> str:
    """Everything the page sends to the browser (labels, texts, options, chart specs), as one string."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def shown_image(at: AppTest) -> str:
    (note,) = [t for t in at.text_input if str(t.key).startswith("review_note_")]
    return str(note.key).rsplit("_", 1)[1]


@pytest.mark.parametrize(
    ("choice", "left", "expected"),
    [("Left better", A, "A better"), ("Left better", B, "B better"), ("Right better", A, "B better"),
     ("Right better", B, "A better"), ("Both wrong", B, "both wrong"), ("Both fine", A, "both fine")],
)  # fmt: skip
def test_left_right_choices_in_model_terms(choice, left, expected):
    assert to_model_terms(choice, left, (A, B)) == expected


@pytest.mark.parametrize(
    ("email", "allowed", "ok"),
    [("ana@example.com", [], True), ("", [], False), ("ana@example.com", ["ana@example.com"], True),
     ("ANA@Example.com", ["ana@example.com"], True), ("bo@example.com", ["ana@example.com"], False),
     ("bo@example.com", ["@example.com"], True), ("bo@evil.com", ["@example.com"], False),
     ("bo@example.com.evil.com", ["@example.com"], False), ("a@b@example.com", ["@example.com"], False)],
)  # fmt: skip
def test_allowlist(email, allowed, ok):
    assert is_allowed(email, allowed) is ok


def test_blind_review_hides_the_names_and_credits_the_right_model(private_run_store):
    ids = stored_pair_run(private_run_store)
    reviewer = next(n for n in ("ana", "bo", "cy", "di") if len({left_is_a(RUN, i, n, A, B) for i in ids}) == 2)
    at = open_page("pages/review.py")
    at.text_input(key="detlens_reviewer").set_value(reviewer).run()
    assert not at.exception
    seen_orders = set()
    for n, expected_image in enumerate(ids):  # the queue: name order, unreviewed by me first
        text = page_text(at)
        assert A not in text and B not in text, "a model name is on the page before the verdict"
        assert f"{n} of 3 reviewed by you" in text
        assert UNTRAINED_MARK in text
        image = shown_image(at)
        assert image == expected_image
        left = A if left_is_a(RUN, image, reviewer, A, B) else B
        seen_orders.add(left)
        at.text_input(key=f"review_note_{RUN}_0_{image}").set_value("<b>cup</b> missed").run()
        at.button(key="review_choice_1").click().run()  # Left better
        assert not at.exception
        current = Store(private_run_store).reviews(RUN)
        mine = current[current["image_id"] == image]
        assert mine["verdict"].tolist() == ["A better" if left == A else "B better"]
        assert mine[["reviewer", "identity", "note"]].values.tolist() == [[reviewer, "typed", "<b>cup</b> missed"]]
        revealed = " ".join(str(s.value) for s in at.success).replace("\\", "")  # md() escapes
        assert f": {left} credited as better" in revealed  # the names are shown once the verdict is saved
        at.button(key="review_next").click().run()
    assert seen_orders == {A, B}, "both orders were shown: a swapped order was credited right"
    assert any("All 3 images" in str(s.value) for s in at.success)


def test_skip_comes_back_and_undo_takes_the_verdict_back(private_run_store):
    ids = stored_pair_run(private_run_store)
    at = open_page("pages/review.py")
    at.text_input(key="detlens_reviewer").set_value("ana").run()
    assert shown_image(at) == ids[0]
    at.button(key="review_skip").click().run()
    assert shown_image(at) == ids[1]
    at.button(key="review_choice_3").click().run()  # both wrong
    at.button(key="review_next").click().run()
    assert shown_image(at) == ids[2]
    at.button(key="review_undo").click().run()
    assert not at.exception
    assert Store(private_run_store).reviews(RUN).empty
    assert len(Store(private_run_store).reviews(RUN, history=True)) == 2  # the verdict and its withdrawal
    assert shown_image(at) == ids[1], "the undone image is judged again first"
    at.button(key="review_choice_4").click().run()
    at.button(key="review_next").click().run()
    at.button(key="review_choice_4").click().run()
    at.button(key="review_next").click().run()
    assert shown_image(at) == ids[0], "the skipped image comes back last"


def test_reviews_page_shows_results_and_marks_typed_names_unverified(private_run_store):
    ids = stored_pair_run(private_run_store)
    store = Store(private_run_store)
    for image, (ana, bo) in zip(ids, [("A better", "A better"), ("A better", "B better"), ("B better", "B better")],
                                strict=True):  # fmt: skip
        store.add_review(RUN, image, "ana", ana, "**not bold**", model_a=A, model_b=B)
        store.add_review(RUN, image, "bo", bo, model_a=A, model_b=B)
    at = open_page("pages/reviews.py")
    assert not at.exception
    frames = {tuple(d.value.columns)[:6]: d.value for d in at.dataframe}
    pairs = next(v for k, v in frames.items() if k[-1] == "n")
    assert pairs["pair"].tolist() == [f"{A} vs {B}"]
    assert pairs[["wins", "losses", "n"]].values.tolist() == [[3, 3, 6]]
    agreement = next(v for k, v in frames.items() if k[-1] == "reviewers")
    assert agreement["statistic"].tolist() == ["Cohen's kappa"]
    assert agreement["value"].iloc[0] == pytest.approx(0.4)  # by hand: po = 2/3, pe = 4/9
    disagree = next(v for k, v in frames.items() if k[0] == "image_id")
    assert disagree["verdicts"].tolist() == ["ana (unverified): A better; bo (unverified): B better"]
    assert disagree["image_id"].tolist() == [ids[1]]
    assert any("Unverified reviewers" in str(w.value) for w in at.warning)


def test_with_sign_in_set_up_a_visitor_sees_only_the_sign_in_and_writes_nothing(private_run_store):
    stored_pair_run(private_run_store)
    auth = {"redirect_uri": "http://127.0.0.1:1/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
            "client_secret": "s", "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}  # fmt: skip
    at = open_page("pages/review.py", auth=auth)
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.text_input and not at.dataframe and not at.get("plotly_chart")
    assert Store(private_run_store).reviews(RUN, history=True).empty


RUN2 = "20260102-000000-fp16"  # sorts after RUN: the pair is stored under RUN (run A)


def test_blind_review_across_two_runs_hides_models_and_runs_and_credits_the_right_run(private_run_store):
    ids = stored_pair_run(private_run_store)
    store = Store(private_run_store)
    store.start_run(run_info(RUN2, models=(B,)))
    for k, (name, image) in enumerate(zip(PHOTOS, ids, strict=True)):
        store.put_image(ImageSource.from_path(GALLERY_DIR / name).hashed(), run_id=RUN2)
        r = dataclasses.replace(make_result(k + 5, B), image_id=image, image_name=name)
        store.add_result(RUN2, r, threshold=THRESHOLD, created_at=CREATED)
    store.finish_run(RUN2)
    sides = ((RUN, B), (RUN2, B))
    reviewer = next(
        n
        for n in ("ana", "bo", "cy", "di", "ed")
        if len({left_is_a("", i, n, *("\0".join(s) for s in sides)) for i in ids}) == 2
    )
    at = open_page("pages/review.py")
    at.text_input(key="detlens_reviewer").set_value(reviewer).run()
    at.radio(key="review_mode").set_value("One series in each of two runs").run()
    at.selectbox(key="review_run").set_value(RUN2).run()  # shown first: run B of the stored pair
    at.selectbox(key="review_model_x").set_value(B).run()
    assert at.selectbox(key="review_model_y").value == B  # the same model by default
    at.button(key="review_start").click().run()
    assert not at.exception
    credited = []
    for n in range(len(ids)):
        text = page_text(at)
        for hidden in (A, B, RUN, RUN2):
            assert hidden not in text, f"{hidden} is on the page before the verdict"
        assert f"{n} of 3 reviewed by you" in text
        image = shown_image(at)
        left = sides[0] if left_is_a("", image, reviewer, *("\0".join(s) for s in sides)) else sides[1]
        at.button(key="review_choice_1").click().run()  # Left better
        assert not at.exception
        revealed = " ".join(str(s.value) for s in at.success).replace("\\", "")
        assert f": {left[1]} (run {left[0]}) credited as better" in revealed
        current = Store(private_run_store).reviews(RUN)
        mine = current[(current["image_id"] == image) & (current["run_b"] == RUN2)]
        assert mine["verdict"].tolist() == ["A better" if left == sides[0] else "B better"]
        credited.append(left)
        at.button(key="review_next").click().run()
    assert set(credited) == set(sides), "both orders were shown"
    results = open_page("pages/reviews.py")
    frames = [d.value for d in results.dataframe]
    pairs = next(f for f in frames if "wins" in f.columns and "label" not in f.columns)
    row = pairs.set_index("pair").loc[f"{B} (run {RUN}) vs {B} (run {RUN2})"]
    assert (row["wins"], row["losses"]) == (credited.count(sides[0]), credited.count(sides[1]))
