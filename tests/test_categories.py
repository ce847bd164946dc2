"""core.categories: real class names, and the category list kept per torchvision version so that evaluating a stored
run needs no torch import (`evaluate --run` on 10,000 images spent 3.9 s of its 11 s importing torch for it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import categories
from core.config import GALLERY_ANNOTATIONS, HEADLINE_MODELS
from core.evaluate import default_categories
from tests.factories import ground_truth_run

ROOT = Path(__file__).resolve().parent.parent


def weights_categories() -> list[str]:
    """The reference: the default weights' own metadata, read from torchvision directly."""
    import torchvision

    return list(torchvision.models.get_model_weights(HEADLINE_MODELS[0]).DEFAULT.meta["categories"])


@pytest.mark.parametrize(
    ("name", "want"),
    [("person", True), ("N/A", False), ("n/a", False), ("__background__", False), ("", False), ("  ", False),
     ("background", False), ("baseball glove", True)],
)  # fmt: skip
def test_is_class_name(name, want):
    assert categories.is_class_name(name) is want


def test_default_categories_are_the_weights_and_are_kept_for_this_torchvision(tmp_path, monkeypatch):
    monkeypatch.setenv("DETLENS_STORE", str(tmp_path))
    kept = categories.cache_file(HEADLINE_MODELS[0])
    assert not kept.exists()
    assert list(default_categories()) == weights_categories()
    assert json.loads(kept.read_text()) == weights_categories()
    import torchvision

    assert torchvision.__version__.split("+")[0] in kept.name


@pytest.mark.parametrize("content", ["", "{", "[]", '{"a": 1}', "[1, 2]", '["person", 3]'])
def test_an_unusable_kept_list_is_read_again_from_the_weights(tmp_path, monkeypatch, content):
    monkeypatch.setenv("DETLENS_STORE", str(tmp_path))
    kept = categories.cache_file(HEADLINE_MODELS[0])
    kept.parent.mkdir(parents=True)
    kept.write_text(content)
    assert categories.kept_categories(HEADLINE_MODELS[0]) is None
    assert list(default_categories()) == weights_categories()
    assert json.loads(kept.read_text()) == weights_categories()


def test_a_folder_that_cannot_be_written_keeps_nothing_and_still_answers(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DETLENS_STORE", str(blocker))
    assert list(default_categories()) == weights_categories()
    assert categories.kept_categories(HEADLINE_MODELS[0]) is None


@pytest.mark.slow
def test_evaluating_a_stored_run_imports_no_torch_once_the_categories_are_kept(tmp_path):
    """The command line and the evaluation import torch only where a model runs: `evaluate --run` answers (AP 1 on
    the gallery's own boxes) without it, once the category list is kept (the first call keeps it)."""
    store = ground_truth_run(tmp_path / "runs", "r1")
    env_code = (
        "import json, sys\n"
        "from core.cli import main\n"
        f"code = main(['evaluate', '--run', 'r1', '--store', {str(store)!r}, '--gt', {str(GALLERY_ANNOTATIONS)!r},"
        " '--json'])\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, 'tv': 'torchvision' in sys.modules}))\n"
    )
    env = {**os.environ, "DETLENS_STORE": str(store)}
    seen = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        lines = out.stdout.strip().splitlines()
        result = json.loads(lines[-1])
        metrics = json.loads("\n".join(lines[:-1]))
        assert result["code"] == 0 and metrics["m"]["AP"] == pytest.approx(1.0)
        seen.append((result["torch"], result["tv"]))
    assert seen == [(True, True), (False, False)]  # the first call reads the weights' metadata and keeps it
