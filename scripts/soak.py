"""Soak: many images through the CLI (and the Run page) with memory watched, to show memory stays bounded.

    .venv/bin/python scripts/soak.py                 # CLI: 200 generated 640x480 photos, and 50 for comparison
    .venv/bin/python scripts/soak.py --images 500 --compare 100
    .venv/bin/python scripts/soak.py --ui 50         # the Run page in AppTest: 50 uploads in one session

CLI mode writes N photos (640x480 JPEGs made from the gallery with crops, flips, rotations, colour and noise, all
different) to a temporary folder and runs `python -m core detect DIR --models ssdlite320_mobilenet_v3_large
--weights untrained --out OUT -q` as a subprocess, sampling its resident memory (RSS, psutil) every 50 ms. It checks
that inferences.csv has exactly N rows, none with an error, and prints peak RSS and RSS over the run, for N and for
the smaller comparison run: a streaming run's memory does not grow with the number of images.

UI mode drives one AppTest session of the Run page (SSDLite, untrained, Upload) with N generated photos uploaded in
batches (`--ui-batch`, a click on Run each), checks that the session holds N rows without error, and prints this
process's peak RSS (resource.getrusage) before and after and the current RSS after each batch.
Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from core.config import GALLERY_DIR, IMAGE_EXTENSIONS  # noqa: E402

MODEL = "ssdlite320_mobilenet_v3_large"
SIZE = (640, 480)
SAMPLE_S = 0.05


def photos(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """N different 640x480 JPEGs made from the gallery photos: random crop, flip, small rotation, colour, noise."""
    rng = np.random.default_rng(seed)
    sources = [
        Image.open(p).convert("RGB")
        for p in sorted(GALLERY_DIR.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    out = []
    for i in range(n):
        img = sources[i % len(sources)]
        w, h = img.size
        scale = rng.uniform(0.6, 1.0)
        cw, ch = max(32, int(w * scale)), max(32, int(h * scale))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        im = im.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, expand=False)
        im = ImageOps.fit(im, SIZE, method=Image.Resampling.BILINEAR)
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.7, 1.3)))
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.5, 1.5)))
        arr = np.asarray(im, dtype=np.int16) + rng.integers(-6, 7, size=(SIZE[1], SIZE[0], 3), dtype=np.int16)
        buf = io.BytesIO()
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=88)
        out.append((f"soak_{i:05d}.jpg", buf.getvalue()))
    return out


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20


def watch(cmd: list[str]) -> tuple[int, list[tuple[float, int]], str]:
    """Run `cmd`, sampling its RSS (with any children); returns (exit status, [(seconds, rss bytes)], output)."""
    t0 = time.monotonic()
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            except psutil.Error:  # ended between poll() and the read
                break
            if rss:  # 0 once the process has exited (a zombie until waited for)
                samples.append((time.monotonic() - t0, rss))
            time.sleep(SAMPLE_S)
        code = proc.wait()
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    return code, samples, output


def cli_soak(n: int, workdir: Path) -> dict:
    """One CLI run over n generated photos; returns its figures and whether the CSV checks passed."""
    images = workdir / f"images_{n}"
    out = workdir / f"out_{n}"
    images.mkdir()
    for name, data in photos(n):
        (images / name).write_bytes(data)
    cmd = [
        sys.executable, "-m", "core", "detect", str(images), "--models", MODEL, "--weights", "untrained",
        "--out", str(out), "-q",
    ]  # fmt: skip
    t0 = time.monotonic()
    code, samples, output = watch(cmd)
    wall = time.monotonic() - t0
    problems = []
    if code != 0:
        problems.append(f"exit status {code}: {output[-2000:]}")
    rows = errors = -1
    csv = out / "inferences.csv"
    if csv.is_file():
        inf = pd.read_csv(csv, keep_default_na=False)
        rows, errors = len(inf), int((inf["error"].astype(str) != "").sum())
        if rows != n:
            problems.append(f"{rows} rows in inferences.csv, expected {n}")
        if errors:
            problems.append(f"{errors} rows with an error: {inf.loc[inf['error'] != '', 'error'].iloc[0]}")
    else:
        problems.append("no inferences.csv")
    rss = [r for _, r in samples] or [0]
    quarters = [rss[min(len(rss) - 1, int(len(rss) * q))] for q in (0.25, 0.5, 0.75)] + [rss[-1]]
    return {
        "n": n, "wall_s": wall, "rows": rows, "errors": errors, "peak": max(rss), "quarters": quarters,
        "samples": len(samples), "problems": problems,
    }  # fmt: skip


def run_cli(args: argparse.Namespace) -> int:
    counts = sorted({c for c in (args.compare, args.images) if c > 0})
    ok = True
    results = []
    with tempfile.TemporaryDirectory(prefix="detlens-soak-") as tmp:
        for n in counts:
            r = cli_soak(n, Path(tmp))
            results.append(r)
            q = ", ".join(f"{mb(v):.0f}" for v in r["quarters"])
            print(
                f"CLI {n} images: {r['wall_s']:.1f} s, {r['rows']} rows, {r['errors']} errors; "
                f"peak RSS {mb(r['peak']):.0f} MB; RSS at 25/50/75% of the run and last {q} MB ({r['samples']} samples)"
            )
            for p in r["problems"]:
                print(f"  FAIL: {p}")
            ok &= not r["problems"]
    if len(results) == 2:
        small, big = results
        growth = mb(big["peak"] - small["peak"])
        print(f"peak RSS, {big['n']} vs {small['n']} images: {growth:+.0f} MB ({big['peak'] / small['peak']:.2f}x)")
        if big["peak"] > small["peak"] * args.max_growth:
            print(f"  FAIL: peak RSS grew more than {args.max_growth:.2f}x with {big['n'] / small['n']:.0f}x images")
            ok = False
    return 0 if ok else 1


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ui(args: argparse.Namespace) -> int:
    os.environ.setdefault("DETLENS_OFFLINE", "1")
    from streamlit.testing.v1 import AppTest

    n, per_click = args.ui, max(1, args.ui_batch)
    files = [(name, data, "image/jpeg") for name, data in photos(n, seed=1)]
    me = psutil.Process()
    before = peak_rss_mb()
    print(f"UI: peak RSS before {before:.0f} MB (current {mb(me.memory_info().rss):.0f} MB)")
    t0 = time.monotonic()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600).run()
    at.switch_page("../pages/run.py").run()
    at.multiselect(key="run_models").set_value([MODEL]).run()
    at.selectbox(key=f"run_weights_{MODEL}").set_value("untrained").run()
    at.radio(key="run_source").set_value("Upload").run()
    problems = []
    first_batch_rss = 0
    for start in range(0, n, per_click):
        batch = files[start : start + per_click]
        at.file_uploader(key="run_upload").set_value(batch).run()
        at.button(key="run_go").click().run()
        if at.exception:
            problems.append(f"exception: {at.exception[0].value}")
            break
        rows = len(at.session_state["detlens_inferences"])
        first_batch_rss = first_batch_rss or me.memory_info().rss  # torch and the model are loaded by now
        print(
            f"  after {start + len(batch)} uploads: {rows} rows, RSS {mb(me.memory_info().rss):.0f} MB, "
            f"peak {peak_rss_mb():.0f} MB"
        )
    inf = at.session_state["detlens_inferences"]
    errors = int((inf["error"] != "").sum())
    if len(inf) != n:
        problems.append(f"{len(inf)} rows in the session, expected {n}")
    if errors:
        problems.append(f"{errors} rows with an error: {inf.loc[inf['error'] != '', 'error'].iloc[0]}")
    after = peak_rss_mb()
    print(
        f"UI {n} images in one session ({per_click} per click): {time.monotonic() - t0:.1f} s, {len(inf)} rows, "
        f"{errors} errors; peak RSS before {before:.0f} MB, after {after:.0f} MB ({after - before:+.0f} MB)"
    )
    if first_batch_rss and n > per_click:
        print(
            f"RSS growth after the first {per_click} images (model loaded): "
            f"{mb(me.memory_info().rss - first_batch_rss):+.0f} MB for {n - per_click} more images"
        )
    for p in problems:
        print(f"  FAIL: {p}")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images for the CLI run (default 200)")
    parser.add_argument("--compare", type=int, default=50, help="a smaller CLI run to compare peak RSS (0: none)")
    parser.add_argument("--max-growth", type=float, default=1.25, help="allowed peak RSS ratio, big vs small run")
    parser.add_argument("--ui", type=int, default=0, help="run N uploads through the Run page in AppTest instead")
    parser.add_argument("--ui-batch", type=int, default=10, help="uploads per click on Run in --ui mode")
    args = parser.parse_args(argv)
    return run_ui(args) if args.ui else run_cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
