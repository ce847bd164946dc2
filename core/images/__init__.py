"""Image decoding and guards: any bytes or path in, an RGB image plus metadata (or a one-line error) out.

Rules (DESIGN.md): the format is decided by content, never by the extension; the pixel count is checked from the
header before any pixel is decoded; EXIF orientation is applied, so `width`/`height` are the displayed size; 16-bit
grey is scaled (not clipped) to 8 bits; alpha is composited on white. `load_image` never raises for bad content or an
unreadable file: the reason is in `LoadedImage.error`, one line a user understands.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import GALLERY_DIR, IMAGE_EXTENSIONS, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from core.images.rgb import to_rgb
from core.text import megabytes, one_line

# Formats Pillow may open but we refuse: EPS is rendered by running Ghostscript, a separate interpreter.
_REFUSED_FORMATS = frozenset({"EPS"})
_ERROR_MAX_CHARS = 200
_SNIFF_BYTES = 1024
_DEFAULT_BYTES_NAME = "image"

# EXIF orientation tag (0x0112): values 2..8 mean the stored pixels are not the displayed ones.
_EXIF_ORIENTATION = 0x0112

# ISO-BMFF `ftyp` brands: HEIF (HEVC-coded) and AVIF (AV1-coded). mif1/msf1 are generic HEIF containers.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})

# Magic numbers of formats Pillow reads, to tell "corrupt PNG" from "not an image" when Pillow cannot identify it.
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
# Magic numbers of things that are not images we read, with the message to show.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "not an image: looks like a PDF document"),
    (b"%!PS", "not an image we read: PostScript/EPS is not supported"),
    (b"PK\x03\x04", "not an image: looks like a ZIP archive"),
    (b"\x1f\x8b", "not an image: looks like a gzip archive"),
    (b"\xff\x0a", "JPEG XL image: not supported by this Pillow build (the pillow-jxl-plugin package would read it)"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL image: not supported by this Pillow build (the pillow-jxl-plugin package would read it)"),
)  # fmt: skip

_heif_lock = threading.Lock()
_heif_state: dict[str, bool] = {}


@dataclass
class LoadedImage:
    """A decoded image ready for a detector, or the one-line reason it is not."""

    name: str  # display name: file name, or the name given with bytes
    image_id: str  # sha256 of the raw bytes, first 16 hex chars ("" if the bytes could not be read)
    image: Image.Image | None  # mode "RGB", EXIF orientation applied, fully loaded; None when error
    width: int  # displayed size, after EXIF orientation (0 when unknown)
    height: int
    format: str  # Pillow's format name ("JPEG", "PNG", ...) or ""
    decode_ms: float  # wall time of read + decode + convert, in ms
    notes: tuple[str, ...] = ()  # short facts a user should see ("first of 12 frames", ...)
    error: str = ""  # "" when usable, else one line
    source: Path | None = None

    def __post_init__(self) -> None:
        if bool(self.error) == (self.image is not None):
            raise ValueError("a LoadedImage has exactly one of `image` and `error`")
        if "\n" in self.error or "\r" in self.error:
            raise ValueError("error must be one line")
        if self.image is not None:
            if self.image.mode != "RGB":
                raise ValueError(f"image must be RGB, got {self.image.mode}")
            if (self.width, self.height) != self.image.size:
                raise ValueError(f"width/height {self.width}x{self.height} differ from image size {self.image.size}")

    @property
    def ok(self) -> bool:
        return not self.error


# --- public API ----------------------------------------------------------------------------------------------------


def content_id(data: bytes) -> str:
    """An image's id: the first 16 hex digits of the sha256 of its bytes (same bytes, same id, whatever the name)."""
    return hashlib.sha256(data).hexdigest()[:16]


def load_image(
    source: str | Path | bytes,
    name: str | None = None,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_IMAGE_BYTES,
    draft_side: int = 0,
) -> LoadedImage:
    """Read and decode one image from a path or raw bytes. Never raises for bad content or an unreadable file.

    `draft_side` > 0 (thumbnails only): a JPEG is decoded at a reduced DCT scale that keeps both sides at least this
    many pixels (Pillow's `Image.draft`); the guards, EXIF orientation and mode conversion are the same, and
    `width`/`height` are then the reduced size. Other formats decode at full size.
    """
    t0 = time.perf_counter()
    path: Path | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | None = bytes(source)
        display = name or _DEFAULT_BYTES_NAME
        error = _check_bytes(data, max_bytes)
    else:
        path = Path(source)
        display = name or path.name or str(path)
        data, error = _read_file(path, display, max_bytes)

    def result(
        *, image: Image.Image | None = None, fmt: str = "", notes: tuple[str, ...] = (), err: str = ""
    ) -> LoadedImage:
        ms = (time.perf_counter() - t0) * 1e3
        w, h = image.size if image is not None else (0, 0)
        image_id = content_id(data) if data is not None else ""
        return LoadedImage(
            display, image_id, image, w, h, fmt, ms, notes, one_line(err, _ERROR_MAX_CHARS) if err else "", path
        )

    if error:
        return result(err=error)
    assert data is not None
    try:
        image, fmt, notes, err = _decode(data, max_pixels, draft_side)
    except MemoryError:
        image, fmt, notes, err = None, "", (), "out of memory while decoding the image"
    except Exception as exc:  # the contract is "never raise": every failure becomes a message
        image, fmt, notes, err = None, "", (), f"{type(exc).__name__}: {exc}"
    return result(image=image, fmt=fmt, notes=notes, err=err)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given (any extension); folders expanded recursively to image files, sorted, hidden entries skipped.

    A missing path is kept so that `load_image` reports it.
    """
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.is_dir():
            out.append(path)
            continue
        found: list[Path] = []
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(
                Path(root) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
            )
        out.extend(sorted(found, key=lambda p: p.relative_to(path).parts))
    return out


@dataclass(frozen=True)
class ImageSource:
    """Where an image's bytes are (a file, or bytes in memory such as an upload); nothing is decoded until `load()`.

    Runs take sources, not decoded images, so a folder of large photos is decoded one image at a time.
    `image_id` is the content hash when the caller computed it (`from_bytes`, `hashed`), else "".
    """

    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    image_id: str = ""

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> ImageSource:
        return cls(name, data=data, image_id=content_id(data))

    @classmethod
    def from_path(cls, path: str | Path) -> ImageSource:
        path = Path(path)
        return cls(path.name, path=path)

    def hashed(self) -> ImageSource:
        """The same source with `image_id` filled in from its bytes."""
        return self if self.image_id else replace(self, image_id=content_id(self.read()))

    def read(self) -> bytes:
        """The raw bytes (b"" when the file is gone or unreadable: loading then says why)."""
        if self.data is not None:
            return self.data
        try:
            return self.path.read_bytes() if self.path else b""
        except OSError:
            return b""

    def load(self) -> LoadedImage:
        """Decode now (never raises: see load_image)."""
        if self.data is not None or self.path is None:
            return load_image(self.data or b"", self.name)
        return load_image(self.path, self.name)


def sources_from_paths(paths: Iterable[str | Path]) -> list[ImageSource]:
    """`expand_paths` as sources, not decoded yet."""
    return [ImageSource.from_path(p) for p in expand_paths(paths)]


def gallery_paths() -> list[Path]:
    """The bundled example images (empty when the gallery folder is missing or empty)."""
    return expand_paths([GALLERY_DIR]) if GALLERY_DIR.is_dir() else []


def downscale_for_display(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """Shrink so the longer side is at most `max_side`; returns (image, scale) with scale = new / original."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    w, h = image.size
    longest = max(w, h)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), scale


# --- reading -------------------------------------------------------------------------------------------------------


def _check_bytes(data: bytes, max_bytes: int) -> str:
    if not data:
        return "empty file"
    if len(data) > max_bytes:
        return f"file is {megabytes(len(data))}, above the {megabytes(max_bytes)} limit"
    return ""


def _read_file(path: Path, display: str, max_bytes: int) -> tuple[bytes | None, str]:
    """The file's bytes, or (None, reason). Never reads more than max_bytes + 1 bytes, never blocks on a FIFO."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, f"file not found: {display}"
    except PermissionError:
        return None, f"cannot read file: permission denied: {display}"
    except OSError as exc:
        return None, f"cannot read file {display}: {exc.strerror or exc}"
    if path.is_dir():
        return None, f"is a folder, not a file: {display}"
    if not path.is_file():
        return None, f"not a regular file: {display}"
    if st.st_size > max_bytes:
        return None, f"file is {megabytes(st.st_size)}, above the {megabytes(max_bytes)} limit"
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except PermissionError:
        return None, f"cannot read file: permission denied: {display}"
    except OSError as exc:
        return None, f"cannot read file {display}: {exc.strerror or exc}"
    return data, _check_bytes(data, max_bytes)


# --- decoding ------------------------------------------------------------------------------------------------------


def _heif_available() -> bool:
    """Register pillow_heif's opener once if it is installed."""
    with _heif_lock:
        if "ok" not in _heif_state:
            try:
                import pillow_heif  # type: ignore[import-not-found]

                pillow_heif.register_heif_opener()
                _heif_state["ok"] = True
            except Exception:  # missing or broken plugin: report HEIC as unreadable
                _heif_state["ok"] = False
        return _heif_state["ok"]


def _allowed_formats() -> list[str]:
    Image.init()
    return [f for f in Image.ID if f not in _REFUSED_FORMATS]


def _ftyp_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF `ftyp` box at the start of the data (empty if none)."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(data[0:4], "big")
    end = min(max(size, 16), len(data), 4096)
    brands = {data[8:12]}
    brands.update(data[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def _container_kind(data: bytes) -> str:
    """The container kind from the `ftyp` brands: "AVIF", "HEIF", or "" for anything else."""
    brands = _ftyp_brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & (_HEIF_BRANDS | _GENERIC_HEIF_BRANDS):
        return "HEIF"
    return ""


def _container_problem(data: bytes) -> tuple[str, str]:
    """(format, error) for HEIF/AVIF files this Pillow cannot read; ("", "") when there is nothing to say."""
    kind = _container_kind(data)
    if kind == "AVIF":
        from PIL import features

        if features.check("avif") or _heif_available():
            return "", ""
        return kind, "AVIF image: this Pillow build cannot read it (Pillow >= 11.3 with AVIF, or pillow-avif-plugin)"
    if kind == "HEIF" and not _heif_available():
        return kind, "HEIC/HEIF image: no Pillow plugin to read it (the pillow-heif package would read it)"
    return "", ""


def _sniff(data: bytes) -> tuple[str, str]:
    """(format, error) for data Pillow could not identify: corrupt image, HTML, text, or unknown."""
    head = data[:_SNIFF_BYTES]
    fmt = _magic_format(head)
    if fmt:
        return fmt, f"truncated or corrupt image data ({fmt} header unreadable)"
    for magic, message in _OTHER_MAGIC:
        if head.startswith(magic):
            return "", message
    kind = _container_kind(data)
    if kind:
        return kind, f"truncated or corrupt image data ({kind} header unreadable)"
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n").lower()
    if _looks_like_text(head):
        if text.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in text:
            return "", "not an image: looks like HTML (a web page saved instead of the image?)"
        if "<svg" in text:
            return "", "not an image we read: looks like SVG (vector graphics are not supported)"
        return "", "not an image: looks like text"
    return "", "not an image: unrecognised format"


def _magic_format(data: bytes) -> str:
    """The image format named by the first bytes ("" if none we know)."""
    return next((fmt for magic, fmt in _IMAGE_MAGIC if data.startswith(magic)), "")


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    decoded = head.decode("utf-8", errors="ignore")
    if len(decoded.encode("utf-8")) < 0.9 * len(head):
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in decoded)
    return printable >= 0.95 * len(decoded)


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels} pixels"


def _bomb_error(w: int, h: int, max_pixels: int) -> str:
    return f"image is {w}x{h} ({_mp(w * h)}), above the {_mp(max_pixels)} limit"


def _header_size(data: bytes, formats: list[str]) -> tuple[str, int, int] | None:
    """The size from the header alone, bypassing Pillow's own bomb check (used only to word its refusal)."""
    for fmt in formats:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(data[:16])):
            continue
        try:
            im = factory(io.BytesIO(data), None)
        except Exception:  # not this plugin, try the next
            continue
        try:
            return fmt, *im.size
        finally:
            im.close()
    return None


def _decode(data: bytes, max_pixels: int, draft_side: int = 0) -> tuple[Image.Image | None, str, tuple[str, ...], str]:
    """(rgb image, format, notes, error) from raw bytes; the size is checked before any pixel is decoded."""
    fmt, problem = _container_problem(data)
    if problem:
        return None, fmt, (), problem
    formats = _allowed_formats()
    try:
        opened = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        fmt, err = _sniff(data)
        return None, fmt, (), err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        header = _header_size(data, formats)
        if header is not None:
            fmt, w, h = header
            if w * h > max_pixels:
                return None, fmt, (), _bomb_error(w, h, max_pixels)
            return None, fmt, (), f"image is {w}x{h} ({_mp(w * h)}), above Pillow's decompression-bomb limit"
        return None, "", (), f"image too large to decode safely ({exc})"
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        fmt = _magic_format(data)
        where = f"{fmt} header unreadable: " if fmt else ""
        return None, fmt, (), f"truncated or corrupt image data ({where}{exc})"

    with opened as im:
        fmt = im.format or ""
        w, h = im.size
        if w < 1 or h < 1:
            return None, fmt, (), f"image has no pixels ({w}x{h})"
        if w * h > max_pixels:
            return None, fmt, (), _bomb_error(w, h, max_pixels)
        notes: list[str] = []
        try:
            n_frames = int(getattr(im, "n_frames", 1))
            if n_frames > 1:
                im.seek(0)
                notes.append(f"first of {n_frames} frames")
        except Exception:  # a broken later frame does not spoil the first
            pass
        if draft_side > 0 and fmt in ("JPEG", "MPO"):
            im.draft(im.mode, (draft_side, draft_side))  # DCT scaling: 1/2..1/8, both sides stay >= draft_side
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return None, fmt, (), _bomb_error(w, h, max_pixels)
        except (OSError, SyntaxError, EOFError, ValueError) as exc:
            message = str(exc)
            if "decoder" in message and "not available" in message:
                return None, fmt, (), f"{fmt or 'this'} image needs a decoder this Pillow build lacks ({message})"
            return None, fmt, (), f"truncated or corrupt image data ({message})"
        if im.size[0] * im.size[1] > max_pixels:  # a frame larger than its header said
            return None, fmt, (), _bomb_error(*im.size, max_pixels)
        oriented = _exif_transpose(im, notes)
        rgb = to_rgb(oriented, notes)
        if rgb is im:  # closing the file would free its pixels
            rgb = im.copy()
    return rgb, fmt, tuple(notes), ""


def _exif_transpose(im: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation (a note when it was not 1); unreadable EXIF is ignored with a note."""
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not cost the image
        notes.append("EXIF unreadable, orientation ignored")
        return im
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return im
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:
        notes.append("EXIF orientation unreadable, ignored")
        return im
    notes.append("EXIF orientation applied")
    return out
