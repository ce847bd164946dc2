"""Run-page logic: server folders only under allowed roots; image sources identified by content."""

from __future__ import annotations

import os

import pytest

from core.config import GALLERY_DIR
from dashboard.launch import FolderNotAllowedError, refs_from_uploads, resolve_folder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "allowed"
    (root / "shots" / "day1").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.png").write_bytes(b"x")
    os.symlink(outside, root / "escape")
    os.symlink(root / "shots", root / "inside-link")
    return root, outside


@pytest.mark.parametrize("rel", ["shots", "shots/day1", ".", "inside-link", "shots/../shots/day1"])
def test_folders_under_a_root_are_allowed(tree, rel):
    root, _ = tree
    assert resolve_folder(str(root / rel), [root.resolve()]).is_relative_to(root.resolve())


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("..", "outside the folders"),
        ("shots/../../secret", "outside the folders"),
        ("escape", "outside the folders"),
        ("/etc", "outside the folders"),
        ("shots/missing", "not a folder"),
        ("", "enter a folder path"),
    ],
)
def test_folders_outside_the_roots_are_refused(tree, rel, message):
    root, _ = tree
    text = rel if rel.startswith("/") or not rel else str(root / rel)
    with pytest.raises(FolderNotAllowedError, match=message):
        resolve_folder(text, [root.resolve()])


def test_relative_paths_resolve_against_the_first_roots_parent(tree):
    root, _ = tree
    assert resolve_folder("allowed/shots", [root.resolve()]) == (root / "shots").resolve()
    with pytest.raises(FolderNotAllowedError):
        resolve_folder("secret", [root.resolve()])


def test_gallery_is_always_an_allowed_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DETLENS_FOLDER_ROOTS", str(tmp_path))
    assert resolve_folder(str(GALLERY_DIR)) == GALLERY_DIR.resolve()
    assert resolve_folder(str(tmp_path)) == tmp_path.resolve()


def test_the_same_upload_twice_is_one_image():
    data = (GALLERY_DIR / "cat.jpg").read_bytes()
    refs = refs_from_uploads([("a.jpg", data), ("b.jpg", data), ("c.jpg", b"other")])
    assert [r.name for r in refs] == ["a.jpg", "c.jpg"]


@pytest.mark.parametrize(
    ("runtime_token", "recorded_device", "left_out"),
    [
        ("eager", "cuda", True),
        ("eager", "cpu", False),  # the same image on the CPU is not what a CUDA run asks for
        ("onnxruntime", "cpu", True),  # ONNX Runtime and OpenVINO run on the CPU whatever the run's device
        ("openvino", "cpu", True),
        ("openvino", "cuda", False),
    ],
)
def test_a_pair_done_in_this_session_is_left_out_on_the_device_its_runtime_runs_on(
    monkeypatch, runtime_token, recorded_device, left_out
):
    from core.execution.runner import RunSettings
    from core.images import ImageSource
    from dashboard import launch

    model = "ssdlite320_mobilenet_v3_large"
    settings = RunSettings([model], "untrained", device="cuda", runtimes={model: [runtime_token]})
    (series,) = settings.series()
    src = ImageSource.from_path(GALLERY_DIR / "cat.jpg").hashed()
    done = {(src.image_id, series.name, "untrained", recorded_device, "fp32")}
    monkeypatch.setattr(launch.state, "done_keys", lambda: done)
    planned = launch.plan_session(settings, [src], "cuda")
    assert (planned.total, planned.skipped) == ((0, 1) if left_out else (1, 0))
