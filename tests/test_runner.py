"""core.execution.runner owns a run: plan what is missing, load before storing, record as it goes, finish or fail, stop."""

from __future__ import annotations

import pytest

from core.config import GALLERY_DIR
from core.execution import runner
from core.execution.runner import RunSettings, execute, plan, run
from core.images import ImageSource
from core.inference.weights import WeightsError
from core.store import Store

SMALL = "ssdlite320_mobilenet_v3_large"


def sources(*names: str) -> list[ImageSource]:
    return [ImageSource.from_path(GALLERY_DIR / n).hashed() for n in names]


def settings(models=(SMALL,), **kw) -> RunSettings:
    return RunSettings(list(models), "untrained", device="cpu", warmup=0, **kw)


@pytest.mark.parametrize(
    ("done_pairs", "todo", "skipped"),
    [
        (set(), {SMALL: ["cat.jpg", "coffee.jpg"], "m2": ["cat.jpg", "coffee.jpg"]}, 0),
        ({("cat.jpg", SMALL)}, {SMALL: ["coffee.jpg"], "m2": ["cat.jpg", "coffee.jpg"]}, 1),
        ({("cat.jpg", "m2"), ("coffee.jpg", "m2")}, {SMALL: ["cat.jpg", "coffee.jpg"]}, 2),
    ],
)
def test_plan_leaves_out_what_is_done_and_keeps_model_order(done_pairs, todo, skipped):
    srcs = sources("cat.jpg", "coffee.jpg")
    planned = plan(settings((SMALL, "m2")), srcs, done=lambda s, m: (s.name, m) in done_pairs)
    assert {m: [s.name for s in v] for m, v in planned.todo.items()} == todo
    assert list(planned.todo) == [m for m in (SMALL, "m2") if m in todo]
    assert planned.skipped == skipped and planned.total == sum(len(v) for v in todo.values())
    assert [s.name for s in planned.sources] == list(dict.fromkeys(n for v in todo.values() for n in v))


def test_a_stored_run_holds_exactly_what_the_output_holds(tmp_path):
    store = Store(tmp_path / "store")
    out = run(sources("cat.jpg", "coffee.jpg"), settings(), store=store, user="ann")
    inf, det, info = store.load_run(out.info.run_id)
    runs = store.list_runs()
    assert runs.loc[0, "status"] == "finished" and runs.loc[0, "user"] == "ann"
    assert inf["created_at"].tolist() == out.inferences["created_at"].tolist()
    assert sorted(inf["image_id"]) == sorted(out.inferences["image_id"])
    assert len(det) == len(out.detections)
    assert info.settings["models"] == [SMALL] and info.settings["weights"] == {SMALL: "untrained"}
    assert set(info.environment["images"].values()) == {"cat.jpg", "coffee.jpg"}
    assert {r.image_id for r in out.results} == set(store.run_images(out.info.run_id))


def test_unusable_weights_raise_before_anything_is_stored(tmp_path):
    store = Store(tmp_path / "store")
    bad = RunSettings([SMALL], str(tmp_path / "missing.pth"), device="cpu")
    with pytest.raises(WeightsError):
        run(sources("cat.jpg"), bad, store=store)
    assert store.list_runs().empty


def test_a_run_with_nothing_to_do_stores_nothing(tmp_path):
    store = Store(tmp_path / "store")
    out = run(sources("cat.jpg"), settings(), store=store)
    planned = plan(settings(), sources("cat.jpg"), done=lambda s, m: True)
    empty = execute(planned, store=store)
    assert empty.results == [] and empty.skipped == 1
    assert store.list_runs()["run_id"].tolist() == [out.info.run_id]


def test_a_store_that_cannot_be_written_is_reported_or_raised(tmp_path):
    class Broken:
        def start_run(self, info, user=""):
            raise OSError("disk full")

    out = run(sources("cat.jpg"), settings(), store=Broken(), store_required=False)
    assert out.store_problem == "disk full" and len(out.results) == 1
    with pytest.raises(OSError, match="disk full"):
        run(sources("cat.jpg"), settings(), store=Broken())


def test_an_error_mid_run_marks_the_stored_run_failed(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")

    def explode(result, done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(sources("cat.jpg", "coffee.jpg", "astronaut.jpg"), settings(), store=store, on_result=explode)
    (row,) = store.list_runs().to_dict("records")
    assert row["status"] == "failed" and row["n_inferences"] == 2  # the finished records are kept


def test_should_stop_ends_the_run_after_the_image_in_flight(tmp_path):
    store = Store(tmp_path / "store")
    seen: list[str] = []
    out = run(
        sources("cat.jpg", "coffee.jpg", "astronaut.jpg"),
        settings(),
        store=store,
        on_result=lambda r, d, t: seen.append(r.image_name),
        should_stop=lambda: len(seen) >= 1,
    )
    assert out.stopped and seen == ["cat.jpg"] and len(out.results) == 1
    (row,) = store.list_runs().to_dict("records")
    assert row["n_inferences"] == 1 and row["status"] == "running"  # the caller decides what a stop means


def test_models_load_once_each_before_the_first_image(monkeypatch):
    order: list[str] = []
    real_load = runner.load_detector

    def load(model, *args, **kwargs):
        order.append(f"load {model}")
        return real_load(model, *args, **kwargs)

    monkeypatch.setattr(runner, "load_detector", load)
    run(
        sources("cat.jpg", "coffee.jpg"),
        settings((SMALL, "fasterrcnn_mobilenet_v3_large_320_fpn")),
        on_result=lambda r, d, t: order.append(f"image {r.model}"),
    )
    assert order[:2] == [f"load {SMALL}", "load fasterrcnn_mobilenet_v3_large_320_fpn"]
    assert order.count(f"image {SMALL}") == 2 and len(order) == 6


def test_unreadable_files_are_each_their_own_error_record(tmp_path):
    """Files whose bytes cannot be read have no content id: two of them are two error rows, not one pair twice."""
    store = Store(tmp_path / "store")
    gone = [ImageSource.from_path(tmp_path / f"gone{i}.jpg") for i in range(2)]
    out = run([*gone, *sources("cat.jpg")], settings(), store=store)
    inf, _, _ = store.load_run(out.info.run_id)
    assert sorted(inf["image_name"]) == ["cat.jpg", "gone0.jpg", "gone1.jpg"]
    assert (inf["error"] != "").sum() == 2 and store.list_runs().loc[0, "status"] == "finished"
    assert store.done_pairs(out.info.run_id) == {(out.results[-1].image_id, SMALL)}


def test_the_same_photo_under_two_names_is_one_record_with_both_names(tmp_path):
    """A folder with a copy of a photo: the run finishes; the store keeps one record per (image, model)."""
    store = Store(tmp_path / "store")
    data = (GALLERY_DIR / "cat.jpg").read_bytes()
    for name in ("cat.jpg", "cat copy.jpg"):
        (tmp_path / name).write_bytes(data)
    srcs = [ImageSource.from_path(tmp_path / n) for n in ("cat.jpg", "cat copy.jpg")]
    out = run(srcs, settings(), store=store)
    inf, _, _ = store.load_run(out.info.run_id)
    assert len(out.results) == 2 and len(inf) == 1 and store.list_runs().loc[0, "status"] == "finished"
    assert [v.name for v in store.run_images(out.info.run_id).values()] == ["cat.jpg"]
