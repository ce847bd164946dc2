"""scripts/bench_browser.py end to end on a tiny store: every page opened in Chromium, its JSON report's shape."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_browser.py"
PAGES = {"home", "gallery", "compare", "data", "evaluate"}
TIMES = ("done_s", "in_view_s")


@pytest.mark.slow
def test_bench_browser_reports_every_page_timed_to_its_last_chart(tmp_path):
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("no /usr/bin/chromium")
    pytest.importorskip("playwright.sync_api")
    store = tmp_path / "store"
    out = subprocess.run([sys.executable, str(SCRIPT), "--images", "6", "--boxes", "120", "--gt", "--json",
                          "--store", str(store)], capture_output=True, text=True, cwd=ROOT, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    with sqlite3.connect(store / "detlens.sqlite") as db:  # the run as stored, counted here
        images, boxes = db.execute("SELECT COUNT(DISTINCT image_id), COUNT(*) FROM detections").fetchone()
    assert report["images"] == 6 and report["boxes"] == boxes and images <= 6
    assert report["gt"] is True and report["width"] == 1400 and report["target_s"] == 1.5
    assert set(report["pages"]) == PAGES
    for page, r in report["pages"].items():
        assert all(isinstance(r[k], float) and r[k] > 0 for k in TIMES), (page, r)
        assert r["in_view_s"] <= r["done_s"], "the first screen is done no later than the whole page"
        assert r["payload_mb"] > 0 and r["server_rss_mb"] > 0 and r["charts"] >= 0
    compare = report["pages"]["compare"]
    assert compare["charts"] >= 3, "Compare's first tab draws its latency, stage and speed charts"
    assert compare["tab_scores_s"] > 0 and compare["tab_agreement_s"] > 0, "each other tab is timed to its charts"
    ev = report["pages"]["evaluate"]
    assert ev["gt_s"] > 0 and ev["eval_cached"] is False, "a new store: the upload evaluates"
    assert ev["gt_charts"] >= 3, "precision-recall, AP per class, accuracy against speed"
    slowest = max(max(r["done_s"], r.get("gt_s", 0)) for r in report["pages"].values())
    assert report["meets_target"] is (slowest <= 1.5)
