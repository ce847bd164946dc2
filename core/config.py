"""Constants shared by every layer: one place for defaults, limits and the records schema."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GALLERY_DIR = REPO_ROOT / "gallery"

# The headline pair: a precise two-stage detector and a tiny single-shot one.
HEADLINE_MODELS: tuple[str, ...] = ("fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large")

# Weights sources (anything else is a path to a local file).
WEIGHTS_DEFAULT = "default"
WEIGHTS_UNTRAINED = "untrained"
UNTRAINED_SEED = 0  # untrained models are seeded so that two builds give the same output
UNNAMED_CLASS = "class"  # a checkpoint saved without class names: label id N is named "class N"

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
CPU_PRECISION_NEEDS = {"bf16": "AVX512-BF16 or AMX", "fp16": "AVX512-FP16 or AMX-FP16"}  # CPU autocast

# Loaded detectors kept per process (least recently used ones are dropped; Faster R-CNN is ~170 MB in fp32).
MAX_LOADED_DETECTORS = 8

# Boxes below this score are dropped when records are made; the threshold slider filters above it.
SCORE_FLOOR = 0.01
DEFAULT_THRESHOLD = 0.5
DEFAULT_WARMUP = 1
DEFAULT_BATCH_SIZE = 1

# Images: pixel count checked before decoding (a 36 MP photo passes, a decompression bomb does not).
MAX_IMAGE_PIXELS = 80_000_000
MAX_IMAGE_BYTES = 200 * 1024 * 1024
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
     ".heic", ".heif", ".avif", ".jfif", ".ico", ".tga"}
)  # fmt: skip

# Video (core.images.video, the Live page): file extensions routed to the video decoder (PyAV sniffs the content), frames
# kept as PNG (lossless: the stored frame is the pixels the model saw), guards on what one source may give.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".ogv", ".y4m"}
)  # fmt: skip
VIDEO_MAX_BYTES = 2 * 1024**3  # a video file the page or a job accepts
VIDEO_MAX_FRAMES = 3600  # sampled frames one video run keeps (an hour at one a second)
FRAME_NAME_SEP = "#"  # a frame's image name: clip.mp4#f000120@4.000s
DEFAULT_FRAME_EVERY = 1

# Live comparison (core.execution.live, pages/live.py): the rolling window of the charts and of the disagreement.
LIVE_WINDOW_FRAMES = 30  # disagreement: the last N frames both series processed
LIVE_HISTORY = 600  # frames of history kept per series for the charts
LIVE_CHART_REFRESH_S = 1.0  # the Live page's charts redraw this often (st.fragment run_every)
LIVE_MAX_BOXES_DRAWN = 100  # boxes drawn per series on a live frame, best scores first (all are counted)
LIVE_RECORD_MAX_FRAMES = 600  # camera frames one recording keeps (then recording stops, and says so)
LIVE_DEFAULT_RATE = 5.0  # frames per second offered to the models by default

# Server folders the dashboard may read (besides the gallery): os.pathsep-separated paths in this variable.
FOLDER_ROOTS_ENV = "DETLENS_FOLDER_ROOTS"

# Downloads of default weights: give up quickly when there is no network.
DOWNLOAD_TIMEOUT_S = 10.0

# Records schema (see DESIGN.md). Order matters: it is the column order of every table we write.
INFERENCE_COLUMNS: tuple[str, ...] = (
    "run_id", "image_id", "image_name", "width", "height", "model", "weights", "device", "precision",
    "batch_size", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "n_detections",
    "threshold", "error", "created_at", "runtime",
)  # fmt: skip
DETECTION_COLUMNS: tuple[str, ...] = (
    "run_id", "image_id", "model", "label_id", "label", "score", "x1", "y1", "x2", "y2",
)  # fmt: skip
INFERENCE_DTYPES: dict[str, str] = {
    "run_id": "string", "image_id": "string", "image_name": "string", "width": "Int64", "height": "Int64",
    "model": "string", "weights": "string", "device": "string", "precision": "string", "batch_size": "int64",
    "preprocess_ms": "float64", "inference_ms": "float64", "postprocess_ms": "float64", "total_ms": "float64",
    "n_detections": "int64", "threshold": "float64", "error": "string", "created_at": "string",
    "runtime": "string",
}  # fmt: skip
DETECTION_DTYPES: dict[str, str] = {
    "run_id": "string", "image_id": "string", "model": "string", "label_id": "int64", "label": "string",
    "score": "float64", "x1": "float64", "y1": "float64", "x2": "float64", "y2": "float64",
}  # fmt: skip

# Runtimes (core.inference.runtimes): how a model runs. Eager is the reference every other runtime is measured against.
RUNTIME_EAGER = "eager"
RUNTIMES: tuple[str, ...] = (RUNTIME_EAGER, "compile", "onnxruntime", "openvino")
# What the Run page offers (any RUNTIME-PRECISION parses on the command line)
RUNTIME_TOKENS: tuple[str, ...] = (*RUNTIMES, "eager-bf16", "openvino-bf16")
SERIES_SEP = "@"  # a series name: the model for eager at the run's precision, else MODEL@RUNTIME[-PRECISION]
ONNX_OPSET = 17  # legacy TorchScript exporter (torch.onnx.export(dynamo=False)); 17 covers every op used here
ARTIFACTS_DIR = "artifacts"  # exported models, under the store folder, by cache key
# Runtime agreement with eager: a non-fp32 series may lose a little; an fp32 one below this F1 share is a defect.
RUNTIME_F1_OK = 0.99
RUNTIME_SCORE_TOL = 0.02  # a box within this much of the threshold on one side is not counted as missed on the other

UNTRAINED_MARK = "untrained weights: not real detections"

# Cross-model agreement (no ground truth): same-label boxes of two models overlapping at least this much match.
AGREEMENT_IOU = 0.5

# Ground-truth evaluation (core.evaluate): COCO instances JSON in, COCOeval's COCO metrics out.
GALLERY_ANNOTATIONS = GALLERY_DIR / "annotations.json"  # hand-drawn COCO boxes for the bundled photos
GT_MAX_BYTES = 64 * 1024 * 1024  # COCO val2017's instances file is about 25 MB
RESULTS_MAX_BYTES = 256 * 1024 * 1024  # a COCO results JSON (val2017 at 100 boxes per image is about 50 MB)
GT_BOX_TOLERANCE_PX = 1.0  # a ground-truth box may reach this far past its image's border
EVAL_IOU = 0.5  # IoU at which a detection matches a ground-truth box (per-box outcomes, PR curve default)
# The Evaluate page opens its first analysis (TIDE) by itself up to this many boxes in the series; above it (TIDE is a
# per-detection greedy pass: about a minute at 2 million boxes on 2 cores) the user picks one, and it is kept.
AUTO_ANALYSIS_MAX_BOXES = 200_000
MAX_F1, TARGET_PRECISION = "max-f1", "precision"  # an operating point's objectives (core.evaluate.operating)
BOOTSTRAP_RESAMPLES = 1000  # the paired bootstrap's resamples (core.evaluate.significance)
BOOTSTRAP_SEED = 0
EVAL_MAX_DETS: tuple[int, int, int] = (1, 10, 100)  # COCO's maxDets: AR1, AR10, AR100 (AP uses the last)

# Run store (core.store): a data folder holding detlens.sqlite and images/ (image bytes by content hash).
STORE_ENV = "DETLENS_STORE"  # the store folder; unset: DEFAULT_STORE_DIR
DEFAULT_STORE_DIR = Path.home() / ".local" / "share" / "detlens"
STORE_DB_NAME = "detlens.sqlite"


def default_store_dir() -> Path:
    """The run store folder: `$DETLENS_STORE` when set, else `~/.local/share/detlens`."""
    value = os.environ.get(STORE_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_STORE_DIR


STORE_BUSY_TIMEOUT_S = 10.0  # a writer waits this long for another writer before "database is locked"
MAX_IMPORT_BYTES = 4 * 1024**3  # total uncompressed size of a run zip that `import` accepts

# Team reviews: a reviewer's verdict on one image of a run, comparing model A with model B.
REVIEW_VERDICTS: tuple[str, ...] = ("A better", "B better", "both wrong", "both fine")
REVIEW_WITHDRAWN = "withdrawn"  # a history row that takes a reviewer's verdict back (undo): no current verdict
REVIEW_FLIPPED: dict[str, str] = {"A better": "B better", "B better": "A better"}  # the verdict with A and B swapped
REVIEW_IDENTITIES: tuple[str, ...] = ("typed", "signed-in")  # a typed name is unverified; signed-in: OpenID Connect
REVIEW_CONFIDENCE = 0.95  # the Wilson interval of a pair's win rate

# Where a run runs: this process (or the worker's), or on a Ray cluster (core.execution.distributed).
ENGINE_LOCAL = "local"
ENGINE_RAY = "ray"

# Ray path (core.execution.distributed): images per Ray batch (decode task and actor call), retries, the reachability probe.
RAY_BATCH_ROWS = 16
RAY_MAX_RETRIES = 3  # a decode task whose worker process died is run again this many times
RAY_MAX_RESTARTS = 3  # a detector actor that died is restarted this many times...
RAY_MAX_TASK_RETRIES = 3  # ...and the batches it held are run again on it
RAY_CONNECT_TIMEOUT_S = 5.0  # `--ray-address HOST:PORT` that accepts no connection in this time: one line, exit 2

# Jobs (core.execution.jobs, core.store.jobs): a worker process runs the queued runs of a store.
JOB_HEARTBEAT_S = 2.0  # a worker beats this often (its own row, and its job's)
JOB_STALE_AFTER_S = float(
    os.environ.get("DETLENS_JOB_STALE_S", "") or 20.0
)  # older heartbeat: job `interrupted`, worker dead
WORKER_POLL_S = 0.5  # an idle worker looks for a queued job this often
WORKER_IDLE_EXIT_S = 600.0  # an idle worker exits after this long (`--idle-exit`)
WORKER_IDLE_EXIT_ENV = "DETLENS_WORKER_IDLE_EXIT_S"  # the idle exit of the worker the dashboard starts
WORKER_NICE = 10  # the worker's niceness: the Streamlit server on the same cores answers first
WORKER_AUTOSTART_ENV = (
    "DETLENS_WORKER_AUTOSTART"  # "0": the dashboard never starts a worker (tests run jobs in-process)
)
LIVE_REFRESH_S = 1.0  # how often a page showing a live run polls the store

# Gallery thumbnails (core.images.thumbs): made once per image, kept in the store under thumbs/<image_id>.jpg.
THUMBS_DIR = "thumbs"
EVAL_CACHE_DIR = "cache/evaluations"  # finished evaluations (core.analytics.evalcache), beside the store's database
CATEGORIES_CACHE_DIR = "cache/categories"  # torchvision's category lists by torchvision version (core.categories)
EVAL_CACHE_MAX_ENTRIES = 32  # the oldest used are removed past this many (a million-box variant: about 17 MB)
THUMB_SIDE = 160  # longest side in pixels
THUMB_QUALITY = 80  # JPEG quality (a 160 px photo is 4-8 KB)
THUMB_ON_PUT_MAX_BYTES = 8 * 1024 * 1024  # Store.put_image makes the thumbnail at once for files up to this size
GALLERY_PAGE_ROWS = 6  # the Gallery grid: rows x columns thumbnails per page (4 columns: tiles, captions and
# "Open NAME" buttons fit at 1280 px beside the sidebar)
GALLERY_PAGE_COLUMNS = 4
