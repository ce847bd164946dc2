"""Video files as runs: `detect VIDEO --every N` and `submit VIDEO --every N` (a worker extracts the frames), one image
per sampled frame named with its number and time, records as any run; a broken stream keeps its frames and fails."""

from __future__ import annotations

import pandas as pd
import pytest

from core.cli import main
from core.config import INFERENCE_COLUMNS, UNTRAINED_MARK
from core.images.video import frame_name
from core.store import Store, default_store_dir
from tests import factories, videos
from tests.factories import run_pending

SMALL = "ssdlite320_mobilenet_v3_large"
N_FRAMES, RATE = 12, 10
OPTIONS = ["--models", SMALL, "--weights", "untrained", "--warmup", "0", "--gt", "none", "-q"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return videos.write_video(tmp_path_factory.mktemp("video") / "clip.mp4", N_FRAMES, size=(64, 48), rate=RATE)


def expected_names(clip, every: int) -> list[str]:
    """The frames PyAV decodes, every `every`-th, named by hand: clip.mp4#f000004@0.400s."""
    return [
        f"clip.mp4#f{i:06d}@{t:.3f}s" for i, (t, _) in enumerate(videos.decoded(clip)) if i % every == 0
    ]  # fmt: skip


@pytest.mark.parametrize("every", [4, 5])
def test_detect_runs_one_image_per_sampled_frame(clip, tmp_path, capsys, every):
    out = tmp_path / "out"
    assert main(["detect", str(clip), "--every", str(every), "--out", str(out), *OPTIONS]) == 0
    inf, det, info = factories.read_written_run(out)
    assert tuple(inf.columns) == INFERENCE_COLUMNS
    assert inf["image_name"].tolist() == expected_names(clip, every)
    assert inf["image_id"].nunique() == len(inf) and (inf["error"].fillna("") == "").all()
    assert (inf["weights"] == "untrained").all() and (inf["width"] == 64).all() and (inf["height"] == 48).all()
    assert UNTRAINED_MARK in capsys.readouterr().out


def test_detect_into_the_store_keeps_each_frame_as_an_image(clip, tmp_path):
    assert (
        main(["detect", str(clip), "--fps", "2.5", "--out", str(tmp_path / "o"), "--store", "default", *OPTIONS]) == 0
    )
    store = Store(default_store_dir())
    (run_id,) = store.list_runs()["run_id"]
    inf, _, _ = store.load_run(run_id)
    names = [s.name for s in store.run_images(run_id).values()]
    assert names == inf["image_name"].tolist() == [frame_name("clip.mp4", i, i / RATE) for i in (0, 4, 8)]
    assert store.job(run_id).status == "finished"


def test_submit_queues_a_video_job_that_the_worker_turns_into_frames(clip, capsys):
    assert main(["submit", str(clip), "--every", "3", "--models", SMALL, "--weights", "untrained"]) == 0
    run_id = capsys.readouterr().out.strip()
    store = Store(default_store_dir())
    assert store.job(run_id).total == 0  # frames are the worker's to extract
    assert run_pending(store) == [run_id]
    job = store.job(run_id)
    assert (job.status, job.done, job.total) == ("finished", 4, 4)
    inf, _, info = store.load_run(run_id)
    assert inf["image_name"].tolist() == expected_names(clip, 3)
    assert sorted(store.run_images(run_id)) == sorted(inf["image_id"])
    assert job.spec["video"]["frames"] == 4 and job.spec["video"]["error"] == ""


def test_a_video_job_whose_stream_breaks_keeps_its_frames_and_fails(clip, tmp_path, capsys):
    broken = videos.with_garbage(clip, tmp_path / "broken.mp4")
    assert main(["submit", str(broken), "--models", SMALL, "--weights", "untrained"]) == 0
    run_id = capsys.readouterr().out.strip()
    store = Store(default_store_dir())
    run_pending(store)
    job = store.job(run_id)
    assert job.status == "failed" and "corrupt after frame" in job.message and "were kept" in job.message
    inf, _, _ = store.load_run(run_id)
    assert 0 < len(inf) < N_FRAMES and job.done == job.total == len(inf)
    assert inf["image_name"].tolist() == [n.replace("clip", "broken") for n in expected_names(clip, 1)[: len(inf)]]
    assert (inf["error"].fillna("") == "").all()


def test_detect_on_a_broken_stream_runs_its_frames_and_exits_failed(clip, tmp_path, capsys):
    broken = videos.with_garbage(clip, tmp_path / "broken.mp4")
    code = main(["detect", str(broken), "--out", str(tmp_path / "o"), "--store", "default", *OPTIONS])
    assert code == 1 and "corrupt after frame" in capsys.readouterr().err
    store = Store(default_store_dir())
    (run_id,) = store.list_runs()["run_id"]
    assert store.job(run_id).status == "failed" and len(store.load_run(run_id)[0]) > 0


@pytest.mark.parametrize("command", ["detect", "submit"])
def test_a_file_that_is_not_a_video_is_refused_and_nothing_is_stored(tmp_path, capsys, command):
    fake = tmp_path / "notes.mp4"
    fake.write_text("just some text, not a video\n" * 20)
    extra = ["--out", str(tmp_path / "o"), "--store", "default", *OPTIONS] if command == "detect" else OPTIONS[:4]
    assert main([command, str(fake), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: notes.mp4: not a video") and len(err.strip().splitlines()) == 1
    store = Store(default_store_dir())
    assert store.list_runs().empty


def test_a_truncated_video_is_refused_at_submit(clip, tmp_path, capsys):
    cut = videos.truncated(clip, tmp_path / "cut.mp4")
    assert main(["submit", str(cut), "--models", SMALL, "--weights", "untrained"]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "words"), [(["--every", "0"], "--every"), (["--fps", "-1"], "--fps")])
def test_nonsense_sampling_is_a_usage_error(clip, capsys, args, words):
    with pytest.raises(SystemExit) as exit_:
        main(["detect", str(clip), *args, *OPTIONS])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_a_video_job_extracts_its_frames_once(clip, capsys, monkeypatch):
    """A resumed video job runs from its spec's frames: the video is not read again (gone, it would not matter)."""
    assert main(["submit", str(clip), "--every", "6", "--models", SMALL, "--weights", "untrained"]) == 0
    run_id = capsys.readouterr().out.strip()
    store = Store(default_store_dir())
    run_pending(store)
    first = store.load_run(run_id)[0]
    spec = store.job(run_id).spec
    store.set_job_spec(run_id, spec | {"video": spec["video"] | {"path": "/nonexistent.mp4"}})
    with store._write() as conn:  # noqa: SLF001 - a finished job made resumable as a failed one would be
        conn.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (run_id,))
    store.resume_job(run_id)
    run_pending(store)
    assert store.job(run_id).status == "finished"
    pd.testing.assert_frame_equal(store.load_run(run_id)[0], first)


def test_videos_are_refused_on_the_ray_engine(clip, capsys):
    assert main(["detect", str(clip), "--engine", "ray", *OPTIONS]) == 2
    assert "not with --engine ray" in capsys.readouterr().err
    assert main(["submit", str(clip), "--engine", "ray", *OPTIONS[:4]]) == 2
