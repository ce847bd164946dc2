"""The Ray path (core.execution.distributed): the local engine's records on a local Ray (num_cpus=2), bad images as records,
an actor killed mid-run (each pair once), an unreachable cluster (one line, exit 2).

One Ray session serves the whole module (Ray starts in seconds, not milliseconds, on two cores).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before Ray is imported: nothing phones home

ray = pytest.importorskip("ray")

from core.cli import EXIT_USAGE, main  # noqa: E402
from core.config import GALLERY_DIR  # noqa: E402
from core.execution import jobs  # noqa: E402
from core.execution.cluster import ClusterError, RayOptions, check_reachable, connect  # noqa: E402
from core.execution.distributed import DetectWorker, list_images, run_ray  # noqa: E402
from core.execution.runner import RunSettings, run  # noqa: E402
from core.images import content_id, gallery_paths, sources_from_paths  # noqa: E402
from core.records import new_run_id  # noqa: E402
from core.store import Store  # noqa: E402

MODEL = "ssdlite320_mobilenet_v3_large"
TIMINGS = ["preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"]
BOX_COLUMNS = ["image_id", "model", "label_id", "label", "score", "x1", "y1", "x2", "y2"]

pytestmark = pytest.mark.slow  # Ray start-up alone takes longer than the whole budget of a fast test


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray for the module, bound to 127.0.0.1 (tests refuse other addresses), no dashboard."""
    started = connect(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_gallery():
    """The local engine's run of the gallery (what every Ray run of it must give back)."""
    return run(sources_from_paths(list_images([GALLERY_DIR])), settings())


def settings(**kw) -> RunSettings:
    return RunSettings(models=[MODEL], default_weights="untrained", device="cpu", warmup=0, **kw)


def sorted_boxes(df):
    return df[BOX_COLUMNS].sort_values(BOX_COLUMNS).reset_index(drop=True)


def test_ray_records_equal_the_local_engine(ray_session, local_gallery, tmp_path: Path) -> None:
    """Same images, same seeded untrained weights: the same boxes, labels, scores and counts; timings measured."""
    paths = list_images([GALLERY_DIR])
    store = Store(tmp_path / "store")
    out = run_ray(paths, settings(), RayOptions(batch_rows=4), store=store, out_dir=tmp_path / "out")
    local = local_gallery

    key = ["image_id", "model"]
    ray_inf = out.inferences.sort_values(key).reset_index(drop=True)
    loc_inf = local.inferences.sort_values(key).reset_index(drop=True)
    same = ["image_id", "image_name", "width", "height", "model", "weights", "device", "n_detections", "error"]
    assert ray_inf[same].equals(loc_inf[same])
    assert (ray_inf[TIMINGS] > 0).all().all()  # run_detector's timing, inside the actor

    # the store holds the same rows as one finished run with the cluster's environment; the parts hold them too
    stored_inf, stored_det, info = store.load_run(out.info.run_id)
    assert len(stored_det) > 0
    assert sorted_boxes(stored_det).equals(sorted_boxes(local.detections))
    assert sorted(stored_inf["image_id"]) == sorted(loc_inf["image_id"])
    runs = store.list_runs()
    assert runs.loc[runs["run_id"] == out.info.run_id, "status"].item() == "finished"
    assert info.settings["engine"] == "ray"
    assert info.environment["ray"]["version"] == ray.__version__
    assert info.environment["ray"]["cpus"] == 2.0 and info.environment["ray"]["nodes"] == 1
    assert info.environment["ray"]["images_per_s"] > 0
    assert set(store.run_images(out.info.run_id)) == set(loc_inf["image_id"])
    part_inf, part_det = read_parts(out.parts_dir)
    assert sorted_boxes(part_det).equals(sorted_boxes(local.detections))
    assert len(part_inf) == len(paths)


def test_bad_images_are_records_not_a_failed_job(ray_session, tmp_path: Path, capsys) -> None:
    """A list file naming good images, a text file called .jpg and a missing file: the CLI finishes the run, and the
    bad ones are records with their error."""
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image", encoding="utf-8")
    listing = tmp_path / "images.txt"
    good = gallery_paths()[:2]
    listing.write_text("\n".join(["# shared storage", *map(str, good), "fake.jpg", str(tmp_path / "gone.png")]))
    store_dir = tmp_path / "store"
    argv = ["detect", str(listing), "--engine", "ray", "--models", MODEL, "--weights", "untrained", "--device", "cpu"]
    rc = main([*argv, "--store", str(store_dir), "--out", str(tmp_path / "out"), "-q"])

    assert rc == 0
    store = Store(store_dir)
    (run_id,) = store.list_runs()["run_id"]
    inf, _, _ = store.load_run(run_id)
    errors = dict(zip(inf["image_name"], inf["error"], strict=True))
    assert set(errors) == {p.name for p in good} | {"fake.jpg", "gone.png"}
    assert all(errors[p.name] == "" for p in good)
    assert errors["fake.jpg"] and errors["gone.png"]
    assert f"failed: fake.jpg: {errors['fake.jpg']}" in capsys.readouterr().out


def crash_marker(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"detlens-test-crash-{run_id}"


class CrashOnce(DetectWorker):
    """Kills its own worker process (no clean-up) when handed cat.jpg while the run's marker file exists (so once):
    Ray must restart the actor and run the batch again."""

    def __call__(self, batch):
        marker = crash_marker(self.run_id)
        if "cat.jpg" in batch.column("name").to_pylist() and marker.exists():
            marker.unlink()
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(ray_session, tmp_path: Path) -> None:
    run_id = new_run_id()
    marker = crash_marker(run_id)
    marker.touch()
    try:
        paths = list_images([GALLERY_DIR])
        store = Store(tmp_path / "store")
        out = run_ray(paths, settings(), RayOptions(batch_rows=2), store=store, run_id=run_id, worker=CrashOnce)
    finally:
        crashed = not marker.exists()
        marker.unlink(missing_ok=True)

    assert crashed  # the actor did die once
    inf, det, _ = store.load_run(out.info.run_id)
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert sorted(pairs) == sorted((content_id(p.read_bytes()), MODEL) for p in paths)  # each pair exactly once
    assert (inf["error"] == "").all()
    assert not det.duplicated(BOX_COLUMNS).any()


def read_parts(parts_dir: Path):
    """The two tables back from a run's Parquet parts folder, as a user reads them (pandas over each folder)."""
    import pandas as pd

    from core.records import coerce_detections, coerce_inferences

    return (coerce_inferences(pd.read_parquet(parts_dir / "inferences")),
            coerce_detections(pd.read_parquet(parts_dir / "detections")))  # fmt: skip


class NoBoxes(DetectWorker):
    """Keeps no box (a score floor above every score): each batch's detections are empty."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "score_floor": 1.01})


def test_a_run_whose_images_had_no_boxes_reads_back_from_its_parts(ray_session, tmp_path: Path) -> None:
    """Every part, empty or not, carries the records schema: pandas reads the parts folder back, and so does
    read_parts (an empty part used to be a 0x0 table, and reading the folder failed on `image_id`)."""
    import pandas as pd

    from core.config import DETECTION_COLUMNS, DETECTION_DTYPES, INFERENCE_COLUMNS

    paths = list_images([GALLERY_DIR])[:3]
    out = run_ray(paths, settings(), RayOptions(batch_rows=2), store=Store(tmp_path / "store"),
                  out_dir=tmp_path / "out", worker=NoBoxes)  # fmt: skip
    parts = sorted((out.parts_dir / "detections").glob("part-*.parquet"))
    assert len(parts) == 2  # two batches, each its own (empty) part
    for part in parts:
        assert list(pd.read_parquet(part).columns) == list(DETECTION_COLUMNS)
    det = pd.read_parquet(out.parts_dir / "detections")  # the whole folder, as a user reads it
    assert det.empty and list(det.columns) == list(DETECTION_COLUMNS)
    assert det.groupby("image_id").size().empty
    part_inf, part_det = read_parts(out.parts_dir)
    assert part_det.empty and dict(part_det.dtypes.astype(str)) == DETECTION_DTYPES
    assert list(part_inf.columns) == list(INFERENCE_COLUMNS) and len(part_inf) == 3
    assert (part_inf["n_detections"] == 0).all()


def test_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    argv = ["detect", str(GALLERY_DIR / "cat.jpg"), "--engine", "ray", "--ray-address", "127.0.0.1:9"]
    rc = main([*argv, "--models", MODEL, "--weights", "untrained", "--store", str(tmp_path / "store"), "-q"])

    err = capsys.readouterr().err.strip()
    assert rc == EXIT_USAGE
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert Store(tmp_path / "store").list_runs().empty  # no run was started


@pytest.mark.parametrize(
    "address, message",
    [("10.0.0.5", "expected HOST:PORT"), ("ray://nohost:x", "expected HOST:PORT"), ("127.0.0.1:9", "cannot reach")],
)
def test_check_reachable_refuses_bad_addresses(address: str, message: str) -> None:
    with pytest.raises(ClusterError, match=message):
        check_reachable(address, timeout_s=1.0)


@pytest.mark.parametrize(
    "lines, expected",
    [
        (["a.jpg", "", "# comment", "sub/b.png"], ["a.jpg", "sub/b.png"]),
        (["  /abs/c.jpg  "], ["/abs/c.jpg"]),
    ],
)
def test_list_images_reads_a_text_file_of_paths(tmp_path: Path, lines: list[str], expected: list[str]) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines), encoding="utf-8")
    assert list_images([listing]) == [(tmp_path / e if not e.startswith("/") else Path(e)) for e in expected]


def test_list_images_expands_folders_like_the_local_engine() -> None:
    assert list_images([GALLERY_DIR]) == [p.absolute() for p in gallery_paths()]


# --- jobs submitted with --engine ray ---------------------------------------------------------------------------------

UNTRAINED = ("--models", MODEL, "--weights", "untrained", "--device", "cpu", "--warmup", "0")


def jobs_json(capsys, store: Path) -> list[dict]:
    assert main(["jobs", "--store", str(store), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_job_submitted_with_engine_ray_gives_the_records_of_local_detect(ray_session, local_gallery, tmp_path: Path,
                                                                          capsys) -> None:  # fmt: skip
    store_dir = tmp_path / "store"
    assert main(["submit", str(GALLERY_DIR), *UNTRAINED, "--engine", "ray", "--store", str(store_dir)]) == 0
    run_id = capsys.readouterr().out.strip()
    assert main(["worker", "--store", str(store_dir), "--idle-exit", "0"]) == 0
    capsys.readouterr()

    (job,) = jobs_json(capsys, store_dir)
    assert (job["run_id"], job["status"], job["engine"], job["done"], job["total"], job["errors"]) == (
        run_id, "finished", "ray", len(gallery_paths()), len(gallery_paths()), 0
    )  # fmt: skip
    inf, det, info = Store(store_dir).load_run(run_id)
    assert sorted_boxes(det).equals(sorted_boxes(local_gallery.detections))
    same = ["image_id", "image_name", "width", "height", "model", "weights", "n_detections", "error"]
    key = ["image_id", "model"]
    assert (
        inf[same]
        .sort_values(key)
        .reset_index(drop=True)
        .equals(local_gallery.inferences[same].sort_values(key).reset_index(drop=True))
    )
    assert info.settings["engine"] == "ray" and info.environment["ray"]["cpus"] == 2.0


def test_a_stopped_or_cancelled_ray_job_ends_so_and_resumes_only_its_missing_pairs(ray_session, tmp_path: Path) -> None:
    """Stopped after its first batch (a worker shutting down): `interrupted`, never `running`; resumed and cancelled
    while running: `cancelled`; resumed again: only the missing pairs run, and each pair is there once."""
    store = Store(tmp_path / "store")
    sources = [s.hashed() for s in sources_from_paths(gallery_paths())]
    run_id = jobs.submit(store, settings(), sources, ray=RayOptions(batch_rows=2))

    status = jobs.run_job(store, store.claim_job(), stop=lambda: store.job(run_id).done > 0)
    first = store.job(run_id)
    assert (status, first.status) == ("interrupted", "interrupted") and 0 < first.done < first.total

    store.resume_job(run_id)
    job = store.claim_job()
    assert store.cancel_job(run_id) == "running"  # asked while it runs: seen before the next batch
    assert jobs.run_job(store, job) == "cancelled" and store.job(run_id).status == "cancelled"

    store.resume_job(run_id)
    job = store.claim_job()
    todo = jobs.ray_todo(store, job)
    assert sum(map(len, todo.values())) == first.total - first.done  # the missing pairs only
    assert jobs.run_job(store, job) == "finished"
    inf, det, _ = store.load_run(run_id)
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert len(pairs) == len(set(pairs)) == first.total and store.job(run_id).status == "finished"
    assert not det.duplicated(BOX_COLUMNS).any()


def test_a_ray_job_whose_cluster_cannot_be_reached_fails_with_one_line(tmp_path: Path, capsys) -> None:
    store_dir = tmp_path / "store"
    argv = ["submit", str(GALLERY_DIR / "cat.jpg"), *UNTRAINED, "--engine", "ray", "--ray-address", "127.0.0.1:9"]
    assert main([*argv, "--store", str(store_dir)]) == 0  # the address is checked when the job runs
    run_id = capsys.readouterr().out.strip()
    assert main(["worker", "--store", str(store_dir), "--idle-exit", "0"]) == 0
    capsys.readouterr()

    (job,) = jobs_json(capsys, store_dir)
    assert (job["run_id"], job["status"], job["done"]) == (run_id, "failed", 0)
    assert job["message"].startswith("cannot reach the Ray cluster at 127.0.0.1:9") and "\n" not in job["message"]


def test_workers_holding_every_cpu_of_the_local_ray_are_refused_before_a_run_starts(ray_session, tmp_path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(ClusterError, match="--workers 2 would hold all 2 CPUs"):
        run_ray(gallery_paths()[:1], settings(), RayOptions(workers=2), store=store)
    assert store.list_runs().empty
