"""Team reviews: verdicts per (reviewer, image, pair) in the store, the reviews_pairs migration, the statistics
(against hand-computed cases and the libraries), the queue, the blind order and `python -m core reviews`."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.compare.reviews import (
    cohens_kappa,
    disagreements,
    krippendorff_alpha,
    left_is_a,
    pair_results,
    per_class,
    review_queue,
    reviewer_agreement,
    summarize,
    wilson_interval,
)
from core.config import REVIEW_WITHDRAWN, STORE_DB_NAME
from core.store import REVIEW_COLUMNS, Store
from core.store import schema as schema_module
from core.store.schema import MIGRATIONS
from tests.test_store import RUN, filled, image_id, make_result

# --- factories -----------------------------------------------------------------------------------------------------


def verdicts(*rows: tuple[str, str, str], a: str = "m1", b: str = "m2") -> pd.DataFrame:
    """Current reviews from (image, reviewer, verdict) rows of one pair."""
    frame = pd.DataFrame(rows, columns=["image_id", "reviewer", "verdict"])
    frame["model_a"], frame["model_b"], frame["identity"] = a, b, "typed"
    return frame.astype("string")


def boxes(*rows: tuple[str, str, str, float], run: str = "") -> pd.DataFrame:
    """Detections of one run from (image, model, label, score) rows."""
    frame = pd.DataFrame(rows, columns=["image_id", "model", "label", "score"])
    frame["run_id"] = run
    return frame


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store") as s:
        filled(s, [make_result(i, m) for m in ("model_a", "model_b", "model_c") for i in range(3)],
               models=("model_a", "model_b", "model_c"))  # fmt: skip
        yield s


# --- store: one current verdict per (reviewer, image, pair) ------------------------------------------------------


def test_one_current_verdict_per_reviewer_image_and_pair_with_history(store):
    img = image_id(0)
    store.add_review(RUN, img, "ana", "A better", model_a="model_a", model_b="model_b")
    store.add_review(RUN, img, "ana", "both wrong", model_a="model_a", model_b="model_c")  # another pair: kept
    store.add_review(RUN, img, "ana", "A better", "changed my mind", model_a="model_b", model_b="model_a")
    current = store.reviews(RUN)
    assert current[["model_a", "model_b", "verdict", "note"]].values.tolist() == [
        ["model_a", "model_b", "B better", "changed my mind"],  # shown B first: stored in sorted terms, flipped
        ["model_a", "model_c", "both wrong", ""],
    ]
    assert store.reviews(RUN, history=True)["verdict"].tolist() == ["A better", "both wrong", "B better"]
    store.add_review(RUN, img, "ana", REVIEW_WITHDRAWN, model_a="model_a", model_b="model_b")  # undo
    assert store.reviews(RUN)["model_b"].tolist() == ["model_c"]
    assert len(store.reviews(RUN, history=True)) == 4
    assert store.list_runs().set_index("run_id").loc[RUN, "n_reviews"] == 1


@pytest.mark.parametrize(("identity", "ok"), [("typed", True), ("signed-in", True), ("", False), ("admin", False)])
def test_review_identity_is_one_of_the_known_kinds(store, identity, ok):
    if ok:
        store.add_review(RUN, image_id(0), "ana", "both fine", identity=identity)
        assert store.reviews(RUN)["identity"].tolist() == [identity]
    else:
        with pytest.raises(Exception, match="unknown reviewer identity"):
            store.add_review(RUN, image_id(0), "ana", "both fine", identity=identity)
        assert store.reviews(RUN).empty


def test_reviewers_saving_at_the_same_moment_never_overwrite_each_other(store):
    barrier = threading.Barrier(8)

    def save(k: int) -> None:
        barrier.wait()
        for i in range(3):
            store.add_review(RUN, image_id(i), f"rev{k}", "A better" if k % 2 else "B better", f"note {k}")

    threads = [threading.Thread(target=save, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    current = store.reviews(RUN)
    assert len(current) == 24 and len(store.reviews(RUN, history=True)) == 24
    assert sorted(set(zip(current["reviewer"], current["note"], strict=True))) == [
        (f"rev{k}", f"note {k}") for k in range(8)
    ]


def test_reviews_survive_a_restart_and_an_export_import_round_trip(store, tmp_path):
    store.add_review(RUN, image_id(0), "ana", "A better", "<b>bold</b>", identity="signed-in")
    store.add_review(RUN, image_id(0), "ana", "both fine")
    store.add_review(RUN, image_id(1), "bo", "B better", model_a="model_c", model_b="model_a")
    history = store.reviews(RUN, history=True)
    store.close()
    reopened = Store(store.path)
    pd.testing.assert_frame_equal(reopened.reviews(RUN, history=True), history)
    zip_path = reopened.export_run(RUN, tmp_path / "run.zip")
    other = Store(tmp_path / "other")
    other.import_run(zip_path)
    pd.testing.assert_frame_equal(other.reviews(RUN, history=True), history)
    pd.testing.assert_frame_equal(other.reviews(RUN), reopened.reviews(RUN))


def test_a_zip_from_before_pairs_is_imported_in_pair_terms(store, tmp_path):
    """An older zip: reviews without `identity`, a pair in the order shown: typed names, sorted pair, flipped."""
    import zipfile

    store.add_review(RUN, image_id(0), "ana", "A better", model_a="model_a", model_b="model_b")
    path = store.export_run(RUN, tmp_path / "run.zip")
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "reviews.parquet":
                frame = pd.read_parquet(__import__("io").BytesIO(data)).drop(columns=["identity"])
                frame[["model_a", "model_b", "verdict"]] = ["model_b", "model_a", "B better"]
                data = frame.to_parquet(index=False)
            dst.writestr(item, data)
    other = Store(tmp_path / "other")
    other.import_run(old)
    got = other.reviews(RUN)
    assert got[["model_a", "model_b", "verdict", "identity"]].values.tolist() == [
        ["model_a", "model_b", "A better", "typed"]
    ]


def store_without(tmp_path, monkeypatch, *skipped: str) -> tuple[Path, sqlite3.Connection]:
    """A store made by a DetLens before the `skipped` migrations (the others applied, so today's record rows fit), with
    one image of two models; and a raw connection to it, to write rows as that version did."""
    previous = tuple(m for m in MIGRATIONS if m.name not in skipped)
    monkeypatch.setattr(schema_module, "MIGRATIONS", previous)
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", schema_module.BASE_VERSION + len(previous))
    path = tmp_path / "s"
    with Store(path) as old:
        filled(old, [make_result(0, m) for m in ("model_a", "model_b")])
    return path, sqlite3.connect(path / STORE_DB_NAME, isolation_level=None)


def test_a_store_of_the_previous_schema_gets_reviews_pairs(tmp_path, monkeypatch):
    """Made by the schema before reviews_pairs (the other migrations applied, so that today's record rows fit), with
    reviews in shown order."""
    path, conn = store_without(tmp_path, monkeypatch, "reviews_pairs", "reviews_cross_run")
    assert "identity" not in {row[1] for row in conn.execute("PRAGMA table_info(reviews)")}
    conn.executemany(
        "INSERT INTO reviews (run_id, image_id, model_a, model_b, reviewer, verdict, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, '', ?)",
        [(RUN, image_id(0), "model_b", "model_a", "ana", "A better", "2026-01-01T00:00:01"),
         (RUN, image_id(0), "model_a", "model_b", "bo", "both wrong", "2026-01-01T00:00:02")],
    )  # fmt: skip
    conn.close()
    monkeypatch.undo()
    with Store(path) as new:
        got = new.reviews(RUN)
    assert got[["reviewer", "model_a", "model_b", "verdict", "identity"]].values.tolist() == [
        ["ana", "model_a", "model_b", "B better", "typed"],
        ["bo", "model_a", "model_b", "both wrong", "typed"],
    ]
    assert tuple(got.columns) == REVIEW_COLUMNS


# --- statistics ----------------------------------------------------------------------------------------------------


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(7, 10), (0, 5), (5, 5), (1, 1), (30, 100)])
def test_wilson_interval_matches_the_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)


def test_wilson_interval_of_7_in_10_by_hand():
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_pair_results_count_from_model_a_side():
    reviews = verdicts(("i1", "ana", "A better"), ("i2", "ana", "A better"), ("i3", "ana", "B better"),
                       ("i1", "bo", "both fine"), ("i2", "bo", "both wrong"), ("i3", "bo", "A better"))  # fmt: skip
    row = pair_results(reviews).iloc[0]
    assert [row[c] for c in ("n", "wins", "losses", "ties", "both_wrong")] == [6, 3, 1, 1, 1]
    assert row["win_rate"] == pytest.approx(0.75)
    assert (row["win_low"], row["win_high"]) == pytest.approx(wilson_by_hand(3, 4))


# two reviewers, three images: by hand po = 2/3, pe = 2/3*1/3 + 1/3*2/3 = 4/9, kappa = (2/9)/(5/9) = 0.4;
# Krippendorff (nominal): o00 = 2, o11 = 2, o01 = o10 = 1, n = 6, De = 2*3*3/(6*5) = 0.6, Do = 2/6, alpha = 4/9.
TWO = [("i1", "ana", "A better"), ("i1", "bo", "A better"), ("i2", "ana", "B better"), ("i2", "bo", "B better"),
       ("i3", "ana", "A better"), ("i3", "bo", "B better")]  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "statistic", "expected"),
    [
        (TWO, "Cohen's kappa", 0.4),
        (TWO + [("i4", "ana", "both fine")], "Cohen's kappa", 0.4),  # only images both judged
        (
            TWO + [("i1", "cy", "A better"), ("i2", "cy", "B better"), ("i3", "cy", "A better")],
            "Krippendorff's alpha",
            None,
        ),  # fmt: skip
        ([("i1", "ana", "both fine"), ("i1", "bo", "both fine")], "Cohen's kappa", math.nan),  # one category
        ([("i1", "ana", "both fine")], "", math.nan),
    ],
    ids=["kappa by hand", "kappa on shared images", "alpha three reviewers", "kappa undefined", "one reviewer"],
)
def test_agreement(rows, statistic, expected):
    got = reviewer_agreement(verdicts(*rows)).iloc[0]
    assert got["statistic"] == statistic
    if expected is None:  # against the library directly, with the verdicts as codes
        import krippendorff

        data = np.array([[0, 1, 0], [0, 1, 1], [0, 1, 0]], dtype=float)
        assert got["value"] == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    elif math.isnan(expected):
        assert math.isnan(got["value"])
    else:
        assert got["value"] == pytest.approx(expected)


def test_krippendorff_alpha_by_hand_and_against_kappa_data():
    matrix = verdicts(*TWO).pivot_table(index="reviewer", columns="image_id", values="verdict", aggfunc="last")
    assert krippendorff_alpha(matrix) == pytest.approx(4 / 9)
    assert cohens_kappa(["A better", "B better", "A better"], ["A better", "B better", "B better"]) == pytest.approx(
        0.4
    )


def test_per_class_uses_the_classes_either_model_found_above_the_threshold():
    reviews = verdicts(("i1", "ana", "A better"), ("i2", "ana", "B better"))
    det = boxes(("i1", "m1", "dog", 0.9), ("i1", "m2", "cat", 0.8), ("i2", "m2", "dog", 0.7),
                ("i2", "m3", "bird", 0.9), ("i2", "m1", "car", 0.1))  # fmt: skip
    got = per_class(reviews, det, threshold=0.5)
    assert got[["label", "n", "wins", "losses"]].values.tolist() == [["cat", 1, 1, 0], ["dog", 2, 1, 1]]


def test_disagreements_list_images_with_different_verdicts():
    reviews = verdicts(("i1", "ana", "A better"), ("i1", "bo", "A better"), ("i2", "ana", "A better"),
                       ("i2", "bo", "both wrong"))  # fmt: skip
    got = disagreements(reviews)
    assert got[["image_id", "verdicts"]].values.tolist() == [["i2", "ana: A better; bo: both wrong"]]


# --- queue and blind order -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "skipped", "expected"),
    [
        ([], [], ["i1", "i2", "i3", "i4"]),
        ([("i1", "me", "A better")], [], ["i2", "i3", "i4"]),
        ([("i1", "me", "A better")], ["i2"], ["i3", "i4", "i2"]),  # skip and come back
        (
            [("i1", "me", "A better"), ("i1", "bo", "B better"), ("i2", "me", "both fine"), ("i2", "bo", "both fine")],
            [],
            ["i3", "i4", "i1"],
        ),  # then the images where reviewers disagree  # fmt: skip
        ([("i3", "bo", "A better")], [], ["i1", "i2", "i3", "i4"]),  # another reviewer's verdict: still mine to do
    ],
)
def test_review_queue(rows, skipped, expected):
    assert review_queue(["i1", "i2", "i3", "i4"], verdicts(*rows), "me", ("m1", "m2"), skipped) == expected


def test_blind_order_is_reproducible_random_and_independent_of_the_pair_order():
    sides = [left_is_a(RUN, f"img{i}", "ana", "m1", "m2") for i in range(200)]
    assert sides == [left_is_a(RUN, f"img{i}", "ana", "m2", "m1") for i in range(200)]
    assert 70 < sum(sides) < 130  # a fair coin, not always the same side
    assert sides != [left_is_a(RUN, f"img{i}", "bo", "m1", "m2") for i in range(200)]  # per reviewer


# --- CLI -----------------------------------------------------------------------------------------------------------


def test_cli_reviews_prints_the_results_and_json(store, capsys):
    store.add_review(RUN, image_id(0), "ana", "A better", identity="signed-in")
    store.add_review(RUN, image_id(1), "ana", "A better", identity="signed-in")
    store.add_review(RUN, image_id(0), "bo", "B better")
    store.add_review(RUN, image_id(1), "bo", "A better")
    assert main(["reviews", RUN, "--store", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "bo: typed name (unverified)" in out.replace("reviewer ", "")
    assert "Cohen's kappa" in out and "reviewers disagree" in out
    assert main(["reviews", RUN, "--store", str(store.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    pair = data["pairs"][0]
    assert (pair["model_a"], pair["model_b"], pair["wins"], pair["losses"], pair["n"]) == (
        "model_a",
        "model_b",
        3,
        1,
        4,
    )
    assert (pair["win_low"], pair["win_high"]) == pytest.approx(wilson_by_hand(3, 4))
    assert data["reviewers"] == {"ana": "signed-in", "bo": "typed"}
    assert [d["image_id"] for d in data["disagreements"]] == [image_id(0)]
    assert main(["reviews", "nope", "--store", str(store.path)]) == 2


def test_summary_marks_typed_reviewers_unverified(store):
    store.add_review(RUN, image_id(0), "ana", "both fine", identity="signed-in")
    store.add_review(RUN, image_id(1), "bo", "both fine")
    summary = summarize(RUN, store.reviews(RUN), store.load_run(RUN)[1], 0.5)
    assert summary.unverified == ["bo"]


# --- pairs across two runs -----------------------------------------------------------------------------------------

RUN2 = "20260102-000000-fp16"  # sorts after RUN: the cross-run pairs live under RUN (run A)


@pytest.fixture
def two_runs(store):
    """RUN (model_a, model_b, model_c on images 0-2) and RUN2 (model_a on images 1-3): images 1 and 2 in both."""
    filled(store, [make_result(i, "model_a") for i in (1, 2, 3)], run_id=RUN2, models=("model_a",))
    return store


def cross(store, image: int, reviewer: str, verdict: str, *, shown_first: str = RUN, note: str = "") -> None:
    """A verdict on model_a of `shown_first` (A as shown) vs model_a of the other run."""
    other = RUN2 if shown_first == RUN else RUN
    store.add_review(shown_first, image_id(image), reviewer, verdict, note, model_a="model_a", model_b="model_a",
                     run_b=other)  # fmt: skip


def test_a_cross_run_pair_has_one_current_verdict_with_history_whichever_run_was_shown_as_a(two_runs):
    cross(two_runs, 1, "ana", "A better")  # RUN's model_a better
    cross(two_runs, 1, "ana", "A better", shown_first=RUN2, note="fp16 wins after all")  # flipped: B better
    cross(two_runs, 1, "bo", "both fine")
    two_runs.add_review(RUN, image_id(1), "ana", "both wrong", model_a="model_a", model_b="model_b")  # same run
    current = two_runs.reviews(RUN)
    assert current[["run_id", "run_b", "reviewer", "model_b", "verdict", "note"]].values.tolist() == [
        [RUN, RUN2, "ana", "model_a", "B better", "fp16 wins after all"],
        [RUN, RUN2, "bo", "model_a", "both fine", ""],
        [RUN, "", "ana", "model_b", "both wrong", ""],
    ]
    assert two_runs.reviews(RUN, history=True)["verdict"].tolist() == [
        "A better",
        "B better",
        "both fine",
        "both wrong",
    ]
    assert two_runs.reviews(RUN2).empty  # stored under run A
    assert two_runs.reviews(RUN2, as_run_b=True)["reviewer"].tolist() == ["ana", "bo"]
    cross(two_runs, 1, "ana", REVIEW_WITHDRAWN, shown_first=RUN2)  # undo
    assert two_runs.reviews(RUN2, as_run_b=True)["reviewer"].tolist() == ["bo"]
    assert two_runs.list_runs().set_index("run_id").loc[RUN, "n_reviews"] == 2


@pytest.mark.parametrize(
    ("image", "model_b", "error"),
    [(0, "model_a", "is not in run"), (3, "model_a", "is not in run"), (1, "model_b", "model 'model_b' is not")],
    ids=["image only in run A", "image only in run B", "model not in run B"],
)
def test_a_cross_run_pair_needs_the_image_and_the_models_in_both_runs(two_runs, image, model_b, error):
    with pytest.raises(Exception, match=error):
        two_runs.add_review(RUN, image_id(image), "ana", "A better", model_a="model_a", model_b=model_b, run_b=RUN2)
    assert two_runs.reviews(RUN, history=True).empty


def test_cross_run_reviews_go_with_run_a_zip_and_survive_an_import_without_run_b(two_runs, tmp_path):
    cross(two_runs, 1, "ana", "A better", shown_first=RUN2, note="<i>x</i>")
    cross(two_runs, 2, "ana", "both wrong")
    two_runs.add_review(RUN, image_id(0), "bo", "A better")
    history = two_runs.reviews(RUN, history=True)
    other = Store(tmp_path / "other")
    other.import_run(two_runs.export_run(RUN, tmp_path / "a.zip"))
    assert not other.has_run(RUN2)
    pd.testing.assert_frame_equal(other.reviews(RUN, history=True), history)
    assert other.reviews(RUN)["run_b"].tolist() == ["", RUN2, RUN2]  # the other run's id is kept
    summary = summarize(RUN, other.reviews(RUN), other.load_run(RUN)[1], 0.5)
    assert f"model_a (run {RUN}) vs model_a (run {RUN2})" in summary.pairs["pair"].tolist()
    third = Store(tmp_path / "third")  # run B's zip carries none of them
    third.import_run(two_runs.export_run(RUN2, tmp_path / "b.zip"))
    assert third.reviews(RUN2, as_run_b=True).empty


def test_a_store_made_before_cross_run_pairs_gets_run_b(tmp_path, monkeypatch):
    path, conn = store_without(tmp_path, monkeypatch, "reviews_cross_run")
    assert "run_b" not in {row[1] for row in conn.execute("PRAGMA table_info(reviews)")}
    conn.executemany(
        "INSERT INTO reviews (run_id, image_id, model_a, model_b, reviewer, verdict, note, created_at, identity) "
        "VALUES (?, ?, 'model_a', 'model_b', 'ana', ?, ?, ?, 'typed')",
        [(RUN, image_id(0), "B better", "", "2026-01-01T00:00:01"),
         (RUN, image_id(0), "both fine", "second thoughts", "2026-01-01T00:00:02")],
    )  # fmt: skip
    conn.close()
    monkeypatch.undo()
    with Store(path) as new:
        assert new.reviews(RUN)[["model_a", "model_b", "verdict", "note", "run_b"]].values.tolist() == [
            ["model_a", "model_b", "both fine", "second thoughts", ""]
        ]
        assert new.reviews(RUN, history=True)["verdict"].tolist() == ["B better", "both fine"]
        applied = {n for (n,) in new._conn().execute("SELECT name FROM schema_migrations")}
    assert "reviews_cross_run" in applied


def test_statistics_credit_the_right_run_after_a_swapped_order(two_runs):
    cross(two_runs, 1, "ana", "A better", shown_first=RUN2)  # RUN2's model better
    cross(two_runs, 2, "ana", "B better", shown_first=RUN2)  # RUN's model better
    cross(two_runs, 2, "bo", "A better")  # RUN's model better
    det = pd.concat([two_runs.load_run(r)[1] for r in (RUN, RUN2)], ignore_index=True)
    for run in (RUN, RUN2):
        reviews = two_runs.reviews(run, as_run_b=True)
        row = summarize(run, reviews, det, 0.0).pairs.iloc[0]
        assert (row["run_a"], row["run_b"], row["wins"], row["losses"], row["n"]) == (RUN, RUN2, 2, 1, 3)
        assert row["pair"] == f"model_a (run {RUN}) vs model_a (run {RUN2})"


def test_cross_run_pairs_are_their_own_pairs_in_the_statistics_and_the_queue():
    reviews = verdicts(("i1", "ana", "A better"), a="m1", b="m1")
    reviews["run_id"], reviews["run_b"] = "r1", "r2"
    same = verdicts(("i1", "ana", "B better"), ("i2", "ana", "B better"), a="m1", b="m2")
    same["run_id"], same["run_b"] = "r1", ""
    both = pd.concat([reviews, same], ignore_index=True)
    got = pair_results(both)
    assert got[["pair", "wins", "losses"]].values.tolist() == [["m1 (run r1) vs m1 (run r2)", 1, 0], ["m1 vs m2", 0, 2]]
    assert review_queue(["i1", "i2"], both, "ana", ("m1", "m1"), run_b="r2") == ["i2"]
    det = pd.concat([boxes(("i1", "m1", "dog", 0.9), run="r1"), boxes(("i1", "m1", "cat", 0.9), run="r2"),
                     boxes(("i1", "m1", "bird", 0.9), run="r3")])  # fmt: skip
    classes = per_class(reviews, det, 0.5)
    assert classes[["label", "wins"]].values.tolist() == [["cat", 1], ["dog", 1]]


def test_cli_reviews_shows_the_cross_run_pairs_of_either_run(two_runs, capsys):
    cross(two_runs, 1, "ana", "A better", shown_first=RUN2)
    cross(two_runs, 2, "ana", "A better", shown_first=RUN2)
    label = f"model_a (run {RUN}) vs model_a (run {RUN2})"
    for run in (RUN2, RUN):
        assert main(["reviews", run, "--store", str(two_runs.path)]) == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if x.startswith(label))
        assert line.split()[len(label.split()) :][:3] == ["2", "0", "2"]  # n, A wins, B wins: RUN2 credited
    assert main(["reviews", RUN2, "--store", str(two_runs.path), "--json"]) == 0
    pair = json.loads(capsys.readouterr().out)["pairs"][0]
    assert (pair["run_a"], pair["run_b"], pair["losses"], pair["pair"]) == (RUN, RUN2, 2, label)


# --- empty cases: every statistic comes out whatever the reviews and boxes are -----------------------------------

NO_REVIEWS = verdicts()
ONE_REVIEWER = verdicts(("i1", "ana", "A better"), ("i2", "ana", "B better"))
ONE_IMAGE = verdicts(("i1", "ana", "A better"), ("i1", "bo", "B better"))
NO_BOXES = boxes()
LOW_BOXES = boxes(("i1", "m1", "dog", 0.2), ("i2", "m2", "cat", 0.3))  # all under the threshold (untrained-like)


@pytest.mark.parametrize(
    ("reviews", "det", "pairs", "agree", "classes"),
    [
        (NO_REVIEWS, NO_BOXES, [], [], []),
        (NO_REVIEWS, LOW_BOXES, [], [], []),
        (ONE_REVIEWER, NO_BOXES, [(2, 1, 1)], [(1, 0, "")], []),
        (ONE_REVIEWER, LOW_BOXES, [(2, 1, 1)], [(1, 0, "")], []),
        (ONE_IMAGE, NO_BOXES, [(2, 1, 1)], [(2, 1, "Cohen's kappa")], []),
        (ONE_IMAGE, boxes(("i1", "m1", "dog", 0.9)), [(2, 1, 1)], [(2, 1, "Cohen's kappa")], [("dog", 2)]),
    ],
    ids=[
        "no reviews",
        "no reviews low boxes",
        "one reviewer no boxes",
        "one reviewer boxes under threshold",
        "one image no boxes",
        "one image one box",
    ],  # fmt: skip
)
def test_every_review_statistic_comes_out_for_empty_and_tiny_inputs(reviews, det, pairs, agree, classes):
    summary = summarize(RUN, reviews, det, threshold=0.5)
    assert [(r.n, r.wins, r.losses) for r in summary.pairs.itertuples()] == pairs
    assert [(r.reviewers, r.images, r.statistic) for r in summary.agreement.itertuples()] == agree
    assert [(r.label, r.n) for r in summary.classes.itertuples()] == classes
    assert list(summary.classes.columns) == list(per_class(reviews, det, 0.5).columns)
    if pairs:  # a decided pair always has its win rate and Wilson interval, boxes or not
        row = summary.pairs.iloc[0]
        assert row["win_rate"] == pytest.approx(0.5)
        assert (row["win_low"], row["win_high"]) == pytest.approx(wilson_by_hand(1, 2))
    data = json.loads(summary.to_json())
    assert data["per_class"] == [{"pair": "m1 vs m2", "model_a": "m1", "model_b": "m2", "run_a": "", "run_b": "",
                                  "label": label, **_class_counts(summary, label)} for label, _ in classes]  # fmt: skip


def _class_counts(summary, label: str) -> dict:
    row = summary.classes.set_index("label").loc[label]
    return json.loads(row.drop(["pair", "model_a", "model_b", "run_a", "run_b"]).to_json())


def test_cli_reviews_with_no_box_at_or_above_the_threshold(store, capsys):
    """Every untrained run, and any high threshold: the results come out and the per-class table is empty."""
    store.add_review(RUN, image_id(0), "ana", "A better")
    store.add_review(RUN, image_id(1), "ana", "B better")
    assert main(["reviews", RUN, "--store", str(store.path), "--threshold", "1.0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(p["wins"], p["losses"]) for p in data["pairs"]] == [(1, 1)]
    assert data["per_class"] == []
    assert main(["reviews", RUN, "--store", str(store.path), "--threshold", "1.0"]) == 0
    assert "model_a vs model_b" in capsys.readouterr().out
