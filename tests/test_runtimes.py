"""Runtimes: series names, refusals, ONNX Runtime / OpenVINO variants under the eager contract, the export cache,
failing exports, agreement with eager, and the records' runtime column in the store."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.compare.agreement import image_agreement, references, runtime_agreement, verdict, with_ap
from core.compare.matching import match_boxes
from core.config import DETECTION_COLUMNS
from core.execution.runner import RunSettings, run
from core.images import ImageSource
from core.inference import devices, engine, runtimes
from core.inference.models import get_model
from core.inference.runtimes import ExportError, check_runtime
from core.inference.series import RuntimeRefusedError, Variant, parse_variant, series_name, split_series
from core.inference.weights import build_model, parse_weights
from core.store import Store
from core.store.schema import SCHEMA_VERSION

SMALL = "ssdlite320_mobilenet_v3_large"
SIZES = ((300, 200), (240, 320))  # (width, height): two sizes through one artifact


# --- names and refusals (fast) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "precision", "run_precision", "name"),
    [
        ("eager", "fp32", "fp32", SMALL),
        ("eager", "fp16", "fp16", SMALL),  # runs stored before runtimes existed read as eager
        ("eager", "bf16", "fp32", f"{SMALL}@eager-bf16"),
        ("onnxruntime", "fp32", "fp32", f"{SMALL}@onnxruntime"),
        ("openvino", "bf16", "fp32", f"{SMALL}@openvino-bf16"),
        ("compile", "fp16", "fp16", f"{SMALL}@compile-fp16"),
    ],
)
def test_series_names_are_short_unique_and_read_back(runtime, precision, run_precision, name):
    assert series_name(SMALL, runtime, precision, run_precision) == name
    model, rt, prec = split_series(name)
    assert (model, rt) == (SMALL, runtime)
    assert prec in (None, precision)


@pytest.mark.parametrize(
    ("token", "variant"),
    [("eager", Variant()), ("OpenVINO-bf16", Variant("openvino", "bf16")), (" onnxruntime ", Variant("onnxruntime"))],
)
def test_variant_tokens_parse(token, variant):
    assert parse_variant(token) == variant


@pytest.mark.parametrize("token", ["tensorrt", "openvino-int8", ""])
def test_unknown_variant_tokens_are_refused_with_the_choices(token):
    with pytest.raises(RuntimeRefusedError, match="choose one of"):
        parse_variant(token)


@pytest.mark.parametrize(
    ("runtime", "precision", "caps", "message"),
    [
        ("onnxruntime", "bf16", {"FP32", "BF16"}, "onnxruntime runs fp32 only"),
        ("openvino", "bf16", {"FP32"}, "needs a CPU with native bf16"),
        ("openvino", "fp16", {"FP32", "BF16"}, "needs a CPU with native fp16"),
        ("eager", "bf16", {"FP32"}, "eager: bf16 autocast on the CPU needs native bf16"),
        ("compile", "fp16", {"FP32", "BF16"}, "compile: fp16 autocast on the CPU needs native fp16"),
    ],
)
def test_unsupported_precisions_are_refused_with_a_reason(monkeypatch, runtime, precision, caps, message):
    monkeypatch.setattr(runtimes, "openvino_capabilities", lambda: frozenset(caps))
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset(c.lower() for c in caps))
    with pytest.raises(RuntimeRefusedError, match=message):
        check_runtime(runtime, precision, torch.device("cpu"))


@pytest.mark.parametrize("runtime", ["openvino", "eager", "compile"])
def test_bf16_runs_on_the_cpu_where_the_cpu_has_it(monkeypatch, runtime):
    monkeypatch.setattr(runtimes, "openvino_capabilities", lambda: frozenset({"FP32", "BF16"}))
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32", "bf16"}))
    assert check_runtime(runtime, "bf16", torch.device("cpu")).type == "cpu"


# --- agreement of one image (fast) ----------------------------------------------------------------------------------


def _boxes(rows):
    return pd.DataFrame(
        [{"label_id": lab, "score": s, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for lab, s, b in rows],
        columns=["label_id", "score", "x1", "y1", "x2", "y2"],
    )


CAT = (17, 0.9, (10, 10, 60, 50))
DOG = (18, 0.8, (100, 100, 200, 180))


@pytest.mark.parametrize(
    ("series", "reference", "f1", "score_diff"),
    [
        ([CAT, DOG], [CAT, DOG], 1.0, 0.0),
        ([], [], 1.0, 0.0),  # nothing on either side: the same result
        ([CAT], [CAT, DOG], 2 / 3, 0.0),  # a missed dog
        ([(17, 0.9, (40, 30, 90, 70))], [CAT], 0.0, 0.0),  # moved off its twin
        ([(18, 0.9, (10, 10, 60, 50))], [CAT], 0.0, 0.0),  # same box, other label
        ([(17, 0.49, (10, 10, 60, 50))], [(17, 0.51, (10, 10, 60, 50))], 1.0, 0.02),  # across the threshold
        ([(17, 0.40, (10, 10, 60, 50))], [(17, 0.51, (10, 10, 60, 50))], 0.0, 0.0),  # truly under it
        ([(17, 0.7, (10, 10, 60, 50))], [CAT], 1.0, 0.2),
    ],
)
def test_image_agreement_counts_matches_one_to_one(series, reference, f1, score_diff):
    got = image_agreement(_boxes(series), _boxes(reference), threshold=0.5)
    assert got.f1 == pytest.approx(f1)
    assert got.max_score_diff == pytest.approx(score_diff)


def _two_series(eager_scores, ort_scores):
    """Inferences and detections of one image by SMALL (eager) and SMALL@onnxruntime, one cat box each per score."""
    inf = pd.DataFrame(
        [{"run_id": "r", "image_id": "img", "model": m, "weights": "untrained", "precision": "fp32", "runtime": rt,
          "error": ""} for m, rt in ((SMALL, "eager"), (f"{SMALL}@onnxruntime", "onnxruntime"))]
    )  # fmt: skip
    det = pd.DataFrame(
        [{"run_id": "r", "image_id": "img", "model": m, "label_id": 17, "label": "cat", "score": s, "x1": 10.0,
          "y1": 10.0, "x2": 60.0, "y2": 50.0}
         for m, scores in ((SMALL, eager_scores), (f"{SMALL}@onnxruntime", ort_scores)) for s in scores],
        columns=list(DETECTION_COLUMNS),
    )  # fmt: skip
    return inf, det


@pytest.mark.parametrize(
    ("eager", "ort", "boxes", "share", "says"),
    [
        ([], [], 0, None, "not measured"),  # untrained weights: nothing to compare
        ([0.2], [0.21], 0, None, "not measured"),  # every box under the threshold
        ([0.9], [0.9], 2, 1.0, "same as eager"),
        ([0.9], [], 1, 0.0, "DEFECT"),
    ],
)
def test_agreement_measured_on_no_boxes_says_so(eager, ort, boxes, share, says):
    """100% agreement on zero boxes measures nothing: the share is NaN (never 1.0) and the verdict says why."""
    row = runtime_agreement(*_two_series(eager, ort), threshold=0.5).iloc[0]
    assert row["images"] == 1 and row["boxes"] == boxes
    if share is None:
        assert np.isnan(row["share_f1_ok"]) and np.isnan(row["mean_f1"]) and not row["defect"]
    else:
        assert row["share_f1_ok"] == share
    assert verdict(row).startswith(says)


# --- the variants, end to end (slow: exports) -----------------------------------------------------------------------


def _png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _decisive_checkpoint(path):
    """SSDLite whose classification head gives a few boxes decisively above 0.5 and the rest far below (untrained
    scores all tie at 1/91, and the top-300 cut among ties would pick different boxes in each runtime)."""
    module = build_model(get_model(SMALL), parse_weights("untrained")).module
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for seq in module.head.classification_head.module_list:
            conv = seq[-1]
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 2.0)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 2.0 - 4.0)
    torch.save(module.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One run: eager, ONNX Runtime and OpenVINO of a decisive checkpoint on two image sizes."""
    folder = tmp_path_factory.mktemp("runtimes")
    ckpt = _decisive_checkpoint(folder / "decisive.pth")
    images = [ImageSource.from_bytes(f"img{w}x{h}.png", _png(w, h, i)) for i, (w, h) in enumerate(SIZES)]
    settings = RunSettings(
        [SMALL], str(ckpt), device="cpu", warmup=1, default_runtimes=["eager", "onnxruntime", "openvino"]
    )
    steps = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETLENS_STORE", str(folder / "store"))
        engine._detectors.clear()
        out = run(images, settings, store=Store(folder / "store"), on_export=lambda s, step: steps.append((s, step)))
    return out, images, ckpt, folder / "store", steps


@pytest.mark.slow
def test_variants_keep_the_eager_contract_on_two_sizes(exported):
    out, images, _, _, _ = exported
    inf, det = out.inferences, out.detections
    assert set(inf["model"]) == {SMALL, f"{SMALL}@onnxruntime", f"{SMALL}@openvino"}
    assert dict(zip(inf["model"], inf["runtime"], strict=True)) == {
        SMALL: "eager",
        f"{SMALL}@onnxruntime": "onnxruntime",
        f"{SMALL}@openvino": "openvino",
    }
    assert (inf["error"] == "").all()
    assert (inf[["preprocess_ms", "inference_ms", "postprocess_ms"]] > 0).all().all()
    for image, (w, h) in zip(images, SIZES, strict=True):
        eager = det[(det["image_id"] == image.image_id) & (det["model"] == SMALL)]
        assert (eager["score"] >= 0.5).sum() >= 5  # the comparison below is not vacuous
        assert eager["x2"].max() <= w + 1e-3 and eager["y2"].max() <= h + 1e-3  # original pixels
        assert eager["x2"].max() > 0.6 * w and eager["y2"].max() > 0.6 * h
        for series in (f"{SMALL}@onnxruntime", f"{SMALL}@openvino"):
            other = det[(det["image_id"] == image.image_id) & (det["model"] == series)]
            a, b = other[other["score"] >= 0.5], eager[eager["score"] >= 0.5]
            assert len(a) == len(b)
            pairs = match_boxes(
                a[["x1", "y1", "x2", "y2"]].to_numpy(), a["label"].to_numpy(),
                b[["x1", "y1", "x2", "y2"]].to_numpy(), b["label"].to_numpy(), iou=0.99,
            )  # fmt: skip
            assert len(pairs) == len(a)  # every box has its eager twin: same label and name, IoU >= 0.99
            diffs = [abs(a["score"].iloc[i] - b["score"].iloc[j]) for i, j, _ in pairs]
            assert max(diffs) < 0.01


@pytest.mark.slow
def test_fp32_variants_agree_with_eager_and_are_not_flagged(exported):
    out = exported[0]
    summary = runtime_agreement(out.inferences, out.detections, threshold=0.5).set_index("series")
    for series in (f"{SMALL}@onnxruntime", f"{SMALL}@openvino"):
        row = summary.loc[series]
        assert row["reference"] == SMALL and row["images"] == len(SIZES)
        assert row["share_f1_ok"] == 1.0 and not row["defect"] and row["mean_iou"] > 0.99
        assert verdict(row).startswith("same as eager")
    with_gt = with_ap(summary.reset_index(), {SMALL: 0.5, f"{SMALL}@openvino": 0.48})
    assert with_gt.set_index("series").loc[f"{SMALL}@openvino", "ap_diff"] == pytest.approx(-0.02)


@pytest.mark.slow
def test_a_moved_box_in_an_fp32_variant_is_a_defect(exported):
    out = exported[0]
    det = out.detections.copy()
    moved = (det["model"] == f"{SMALL}@onnxruntime") & (det["score"] >= 0.5)
    det.loc[moved, ["x1", "x2"]] += 40.0
    row = runtime_agreement(out.inferences, det).set_index("series").loc[f"{SMALL}@onnxruntime"]
    assert row["defect"] and verdict(row).startswith("DEFECT")


@pytest.mark.slow
def test_export_is_reported_by_step_and_kept_with_the_run(exported):
    out, _, _, store_dir, steps = exported
    variants = out.info.settings["variants"]
    for name, runtime in ((f"{SMALL}@onnxruntime", "onnxruntime"), (f"{SMALL}@openvino", "openvino")):
        v = variants[name]
        assert v["runtime"] == runtime and v["precision"] == "fp32" and not v["cache_hit"]
        assert v["export_s"] > 0 and v["artifact_bytes"] > 1_000_000 and "opset" in v["exporter"]
        assert v["artifact"].startswith(str(store_dir / "artifacts"))
        assert any(s == name and "ONNX" in step for s, step in steps)
    assert variants[f"{SMALL}@onnxruntime"]["options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert variants[f"{SMALL}@openvino"]["options"]["INFERENCE_PRECISION_HINT"] == "f32"  # what ran, kept with the run
    assert variants[SMALL]["runtime"] == "eager"
    assert Store(store_dir).load_run(out.info.run_id)[0]["runtime"].tolist() == out.inferences["runtime"].tolist()


@pytest.mark.slow
def test_a_second_load_takes_the_artifact_from_the_cache(exported, monkeypatch):
    _, _, ckpt, store_dir, _ = exported
    monkeypatch.setenv("DETLENS_STORE", str(store_dir))

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtimes, "export_onnx", no_export)
    engine._detectors.clear()
    det = engine.load_detector(SMALL, str(ckpt), "cpu", runtime="onnxruntime")
    assert det.export is not None and det.export.cache_hit and det.series == f"{SMALL}@onnxruntime"
    assert len(det([torch.rand(3, 100, 150)])[0]["boxes"])


@pytest.mark.slow
def test_the_same_file_built_otherwise_is_another_artifact(exported, monkeypatch, tmp_path):
    """A sidecar that changes the build (here builder_kwargs) changes the exported graph: not the cached one."""
    _, _, ckpt, store_dir, _ = exported
    monkeypatch.setenv("DETLENS_STORE", str(store_dir))
    copy = tmp_path / ckpt.name
    copy.write_bytes(ckpt.read_bytes())
    copy.with_suffix(".json").write_text('{"builder_kwargs": {"detections_per_img": 5}}')
    engine._detectors.clear()
    det = engine.load_detector(SMALL, str(copy), "cpu", runtime="onnxruntime")
    assert det.export is not None and not det.export.cache_hit
    assert "detections_per_img=5" in det.weights_build
    assert len(det([torch.rand(3, 100, 150)])[0]["boxes"]) <= 5


@pytest.mark.slow
def test_a_failing_export_names_its_step_and_the_other_series_go_on(monkeypatch):
    def broken(module, path):
        raise RuntimeError("Unsupported: ONNX export of operator foo")

    monkeypatch.setattr(runtimes, "export_onnx", broken)
    engine._detectors.clear()
    images = [ImageSource.from_bytes("a.png", _png(120, 90, 5))]
    settings = RunSettings([SMALL], "untrained", device="cpu", warmup=0, default_runtimes=["eager", "onnxruntime"])
    out = run(images, settings)
    inf = out.inferences.set_index("model")
    assert inf.loc[SMALL, "error"] == ""
    error = inf.loc[f"{SMALL}@onnxruntime", "error"]
    assert "onnxruntime export failed at step 'exporting to ONNX" in error and "operator foo" in error
    assert out.info.settings["variants"][f"{SMALL}@onnxruntime"]["error"] == error


def test_a_refused_runtime_stops_the_run_before_anything_runs(monkeypatch):
    images = [ImageSource.from_bytes("a.png", _png(60, 40, 6))]
    settings = RunSettings([SMALL], "untrained", device="cpu", default_runtimes=["eager", "onnxruntime-bf16"])
    with pytest.raises(RuntimeRefusedError, match="onnxruntime runs fp32 only"):
        run(images, settings)


def test_export_errors_say_runtime_step_and_reason():
    exc = ExportError("openvino", "converting ONNX to OpenVINO IR", "RuntimeError: boom")
    assert str(exc) == "openvino export failed at step 'converting ONNX to OpenVINO IR': RuntimeError: boom"


# --- store migration ------------------------------------------------------------------------------------------------


def test_a_store_from_before_runtimes_gains_the_column_and_reads_eager(tmp_path):
    from tests.factories import RUN, gallery_ref, inference, tables

    store = Store(tmp_path / "s")
    store.close()
    db = sqlite3.connect(tmp_path / "s" / "detlens.sqlite")
    db.execute("ALTER TABLE inferences DROP COLUMN runtime")
    db.execute("INSERT INTO runs (run_id, created_at) VALUES (?, '2026-01-01')", (RUN,))
    inf, _ = tables([inference(gallery_ref("cat.jpg"), SMALL)], [])
    old = [c for c in inf.columns if c != "runtime"]
    db.execute(f"INSERT INTO inferences ({', '.join(old)}) VALUES ({', '.join('?' * len(old))})",
               [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in inf.iloc[0][old]])  # fmt: skip
    db.execute("DELETE FROM schema_migrations WHERE name = 'records_runtime'")  # as a store from before runtimes
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    db.commit()
    db.close()
    loaded, det, _ = Store(tmp_path / "s").load_run(RUN)
    assert loaded["runtime"].tolist() == ["eager"] and loaded["model"].tolist() == [SMALL]
    assert list(det.columns) == list(DETECTION_COLUMNS)


# --- the dashboard: series in the model cards, agreement in Compare ---------------------------------------------------


def _runtime_session():
    """cat.jpg through eager, an ONNX Runtime twin (same boxes) and an OpenVINO fp32 variant that moved its box."""
    from tests.factories import box, gallery_ref, inference, tables

    cat = gallery_ref("cat.jpg")
    ort, ov = f"{SMALL}@onnxruntime", f"{SMALL}@openvino"
    inf = [inference(cat, m, total=t, n=1) | {"runtime": rt} for m, t, rt in
           ((SMALL, 50, "eager"), (ort, 90, "onnxruntime"), (ov, 20, "openvino"))]  # fmt: skip
    det = [
        box(cat, SMALL, "cat", 0.9, (10, 10, 60, 50), 17),
        box(cat, ort, "cat", 0.9, (10, 10, 60, 50), 17),
        box(cat, ov, "cat", 0.9, (200, 100, 260, 150), 17),
    ]
    inf_df, det_df = tables(inf, det)
    return inf_df, det_df, {cat.image_id: cat}


def test_each_series_has_its_own_model_card_with_its_registry_figures():
    from dashboard.figures.cards import model_card

    inf, _, _ = _runtime_session()
    meta = pd.DataFrame([{"model": SMALL, "title": "SSDLite", "box_map": 21.3, "gflops": 0.58, "params": 3.4,
                          "file_size_mb": 13.4}])  # fmt: skip
    card = model_card(inf, meta).set_index("model")
    assert list(card.index) == [SMALL, f"{SMALL}@onnxruntime", f"{SMALL}@openvino"]
    assert card["runtime"].tolist() == ["eager", "onnxruntime", "openvino"]
    assert card.loc[f"{SMALL}@openvino", "title"] == "SSDLite (openvino)"
    assert (card["gflops"] == 0.58).all() and card.loc[f"{SMALL}@onnxruntime", "median_total_ms"] == 90


@pytest.mark.slow
def test_compare_shows_runtime_agreement_and_flags_an_fp32_defect():
    from tests.test_pages import compare_tab, open_page

    first = open_page("pages/compare.py", _runtime_session())  # the Speed tab: the defect is flagged there too
    assert any("openvino" in e.value and "Runtimes tab" in e.value for e in first.error)
    assert not [d for d in first.dataframe if "verdict" in d.value.columns], "a closed tab's table was built"
    at = compare_tab(first, "Runtimes")
    assert not at.exception
    tables_ = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert tables_, "no runtime agreement table"
    rows = tables_[0].set_index("series")
    assert rows.loc[f"{SMALL}@onnxruntime", "share_f1_ok"] == 1.0
    assert bool(rows.loc[f"{SMALL}@openvino", "defect"])
    assert any("openvino" in e.value for e in at.error)


# --- GPU paths (run where a CUDA GPU is lent) ------------------------------------------------------------------------


@pytest.mark.needs_cuda
@pytest.mark.parametrize(("token", "defect_possible"), [("eager-fp16", True), ("eager-bf16", True), ("compile", False)])
def test_gpu_variants_run_and_are_measured_against_eager_fp32(tmp_path, token, defect_possible):
    ckpt = _decisive_checkpoint(tmp_path / "decisive.pth")
    images = [ImageSource.from_bytes(f"g{w}x{h}.png", _png(w, h, i)) for i, (w, h) in enumerate(SIZES)]
    settings = RunSettings([SMALL], str(ckpt), device="cuda", warmup=1, default_runtimes=["eager", token])
    out = run(images, settings)
    assert (out.inferences["error"] == "").all() and set(out.inferences["device"]) == {"cuda:0"}
    row = runtime_agreement(out.inferences, out.detections).iloc[0]
    assert row["reference"] == SMALL and row["images"] == len(SIZES)
    if not defect_possible:
        assert not row["defect"], verdict(row)


def test_eager_bf16_on_the_cpu_is_its_own_series_measured_against_eager_fp32(monkeypatch, tmp_path):
    """Where the CPU has bf16 (forced here: torch emulates it elsewhere), `eager-bf16` runs under CPU autocast beside
    eager fp32 and gets its agreement row, as every series other than its reference does."""
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32", "bf16"}))
    ckpt = _decisive_checkpoint(tmp_path / "decisive.pth")
    images = [ImageSource.from_bytes(f"g{w}x{h}.png", _png(w, h, i)) for i, (w, h) in enumerate(SIZES)]
    out = run(images, RunSettings([SMALL], str(ckpt), device="cpu", warmup=0, default_runtimes=["eager", "eager-bf16"]))
    assert (out.inferences["error"] == "").all()
    assert sorted(set(zip(out.inferences["model"], out.inferences["precision"], strict=True))) == [
        (SMALL, "fp32"),
        (f"{SMALL}@eager-bf16", "bf16"),
    ]
    summary = runtime_agreement(out.inferences, out.detections)
    assert list(summary["series"]) == [f"{SMALL}@eager-bf16"]
    row = summary.iloc[0]
    assert row["reference"] == SMALL and row["images"] == len(SIZES) and row["precision"] == "bf16"
    assert not row["defect"]  # bf16 shows its measured loss, never a defect


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (["m", "m@eager-bf16", "m@openvino"], {"m@eager-bf16": "m", "m@openvino": "m"}),
        (["m@eager-fp32", "m", "m@onnxruntime"], {"m": "m@eager-fp32", "m@onnxruntime": "m@eager-fp32"}),
        (["m@openvino", "n"], {}),  # no eager m to compare with
        (["m", "n", "n@compile"], {"n@compile": "n"}),
    ],
)
def test_every_series_but_the_eager_fp32_reference_is_compared_with_it(series, expected):
    precision = {"m": "bf16", "m@eager-fp32": "fp32"} if "m@eager-fp32" in series else {}
    frame = pd.DataFrame(
        {
            "model": series,
            "weights": "w",
            "precision": [precision.get(s, split_series(s)[2] or "fp32") for s in series],
            "runtime": [split_series(s)[1] for s in series],
        }
    )
    assert references(frame) == expected


class _TinyDetector(torch.nn.Module):
    """Two boxes scaled to the image, with the R-CNN output order (boxes, labels, scores) or SSD's."""

    def __init__(self, order: tuple[str, ...]) -> None:
        super().__init__()
        self.order = order

    def forward(self, images):
        h, w = images[0].shape[-2:]
        scale = torch.stack([w, h, w, h]).float() if isinstance(w, torch.Tensor) else torch.tensor([w, h, w, h]).float()
        out = {
            "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]]) * scale,
            "labels": torch.tensor([3, 17]) + (images[0].mean() * 0).long(),
            "scores": torch.tensor([0.9, 0.6]) + images[0].mean() * 0,
        }
        return [{k: out[k] for k in self.order}]


@pytest.mark.parametrize("order", [("boxes", "labels", "scores"), ("boxes", "scores", "labels")])
def test_onnx_outputs_are_read_by_name_whatever_the_model_order(tmp_path, order):
    runtimes.export_onnx(_TinyDetector(order).eval(), tmp_path / "m.onnx")
    out = runtimes.OnnxRuntimeModel(tmp_path / "m.onnx", threads=1)([torch.rand(3, 40, 60)])[0]
    assert out["labels"].tolist() == [3, 17] and out["labels"].dtype == torch.int64
    assert out["scores"].tolist() == pytest.approx([0.9, 0.6])
    assert out["boxes"][1].tolist() == pytest.approx([12.0, 12.0, 54.0, 32.0])  # scaled to the 60x40 input


@pytest.mark.parametrize("threads", [1, 2])
def test_onnx_runtime_session_runs_optimised_in_sequence_on_the_given_threads(tmp_path, threads):
    runtimes.export_onnx(_TinyDetector(("boxes", "labels", "scores")).eval(), tmp_path / "m.onnx")
    model = runtimes.OnnxRuntimeModel(tmp_path / "m.onnx", threads=threads)
    assert model.options == {
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "execution_mode": "ORT_SEQUENTIAL",
        "intra_op_num_threads": str(threads),
    }


@pytest.mark.parametrize(("precision", "hint"), [("fp32", "f32"), ("bf16", "bf16")])
def test_openvino_compiles_for_latency_on_the_given_threads_and_says_so(tmp_path, precision, hint):
    import openvino as ov

    if precision.upper() not in runtimes.openvino_capabilities():
        pytest.skip(f"this CPU has no native {precision}")
    runtimes.export_onnx(_TinyDetector(("boxes", "labels", "scores")).eval(), tmp_path / "m.onnx")
    ov.save_model(ov.convert_model(str(tmp_path / "m.onnx")), str(tmp_path / "m.xml"))
    model = runtimes.OpenVinoModel(tmp_path / "m.xml", precision, threads=2)
    assert model.options["INFERENCE_PRECISION_HINT"] == hint
    assert model.options["PERFORMANCE_HINT"] == "LATENCY"
    assert (model.options["INFERENCE_NUM_THREADS"], model.options["NUM_STREAMS"]) == ("2", "1")
    out = model([torch.rand(3, 40, 60)])[0]
    assert out["boxes"][1].tolist() == pytest.approx([12.0, 12.0, 54.0, 32.0], rel=1e-2)  # any size, scaled to it


@pytest.mark.parametrize(
    ("name", "scope"),
    [(SMALL, runtimes.COMPILE_SCOPE_MODEL), ("fasterrcnn_mobilenet_v3_large_320_fpn", runtimes.COMPILE_SCOPE_BACKBONE)],
)
def test_compile_takes_the_backbone_of_a_two_stage_detector_and_the_whole_of_the_others(monkeypatch, name, scope):
    compiled = []

    def fake_compile(module, **kwargs):
        compiled.append((module, kwargs))
        return module

    monkeypatch.setattr(runtimes.torch, "compile", fake_compile)
    module = build_model(get_model(name), parse_weights("untrained")).module.eval()
    backbone = module.backbone
    variant = runtimes.CompiledModel(module)
    assert variant.scope == scope
    assert [kw for _, kw in compiled] == [{"dynamic": True}]
    assert compiled[0][0] is (backbone if scope == runtimes.COMPILE_SCOPE_BACKBONE else module)


@pytest.mark.slow
def test_a_compiled_two_stage_detector_gives_the_eager_boxes():
    """Faster R-CNN's compile runtime on the CPU (backbone compiled, heads eager): its first call finishes (a whole-model
    compile did not within 15 minutes) and gives eager's boxes, on two image sizes (dynamic shapes)."""
    import copy

    from tests.test_engine import FRCNN_SMALL, _decisive

    module = _decisive(FRCNN_SMALL)
    eager = copy.deepcopy(module)
    torch._dynamo.reset()
    variant = runtimes.CompiledModel(module)
    gen = torch.Generator().manual_seed(2)
    for size in ((96, 128), (120, 90)):
        image = torch.rand(3, *size, generator=gen)
        with torch.inference_mode():
            got, want = variant([image])[0], eager([image])[0]
        assert (want["scores"] >= 0.5).sum() > 0, "decisive boxes to compare"
        assert torch.equal(got["labels"], want["labels"])
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the backbone ran compiled"
