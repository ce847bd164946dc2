"""Image bytes kept by content hash under images/, their thumbnails under thumbs/, and which images each run lists."""

from __future__ import annotations

import io
from pathlib import Path

from core.config import MAX_IMAGE_BYTES, THUMB_ON_PUT_MAX_BYTES, THUMBS_DIR
from core.files import write_atomic
from core.images import ImageSource, content_id, thumbs
from core.records import now_iso
from core.store.connection import StoreBase

# Pillow format -> the suffix a stored copy gets (the format is decided by content, never by the file name).
_FORMAT_SUFFIX = {
    "JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm",
    "ICO": ".ico", "TGA": ".tga", "MPO": ".jpg", "AVIF": ".avif", "HEIF": ".heic",
}  # fmt: skip


def image_format(data: bytes) -> str:
    """Pillow's format name of these bytes (from the header only), or "" when Pillow does not know them."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or ""
    except Exception:
        return ""


def _suffix_for(data: bytes, name: str) -> tuple[str, str]:
    """(format, suffix) of a stored copy, by content: Pillow's format; a HEIF/AVIF container this Pillow cannot
    read keeps its `.heic`/`.heif`/`.avif` name; anything else (text, PDF, random bytes) is `.bin`."""
    fmt = image_format(data)
    if fmt in _FORMAT_SUFFIX:
        return fmt, _FORMAT_SUFFIX[fmt]
    if data[4:8] == b"ftyp":
        ext = Path(name).suffix.lower()
        return fmt, ext if ext in (".heic", ".heif", ".avif") else ".heic"
    return fmt, ".bin"


class ImagesMixin(StoreBase):
    """The `images` and `run_images` tables, the files under images/ and their thumbnails under thumbs/."""

    @property
    def thumbs_dir(self) -> Path:
        """`<store>/thumbs/`: one `<image_id>.jpg` per image (core.images.thumbs), made on first request or when kept."""
        return self.path / THUMBS_DIR

    def put_image(self, source: ImageSource, *, run_id: str | None = None) -> str:
        """Keep a copy of the source's bytes under images/ by content hash (idempotent) and return its image_id.

        With `run_id`, the image is also listed in that run under the source's name. Unreadable or empty sources
        and files over MAX_IMAGE_BYTES are not kept: the result is "" (their records still say why they failed).
        The thumbnail is made now when the file is at most THUMB_ON_PUT_MAX_BYTES (a JPEG decoded at 1/8 scale costs
        a few ms); larger ones get theirs on first request.
        """
        data = source.read()
        if not data or len(data) > MAX_IMAGE_BYTES:
            return ""
        image_id = content_id(data)
        fmt, suffix = _suffix_for(data, source.name)
        self._put_bytes(image_id, data, source.name, fmt, suffix, run_id)
        if len(data) <= THUMB_ON_PUT_MAX_BYTES:
            thumbs.ensure(self.thumbs_dir, image_id, ImageSource(source.name, data=data, image_id=image_id))
        return image_id

    def thumbnail(self, image_id: str, source: ImageSource | None = None) -> thumbs.Thumbnail:
        """The image's kept thumbnail, made now from `source` (else the stored copy) when missing. Never raises for
        an unknown, gone or corrupt image: the result then has `error` (show `core.images.thumbs.placeholder()`)."""
        if source is None:
            with self._read() as conn:
                row = conn.execute("SELECT name, path FROM images WHERE image_id = ?", (image_id,)).fetchone()
            if row and (self.path / row[1]).is_file():
                source = ImageSource(row[0], path=self.path / row[1], image_id=image_id)
        return thumbs.ensure(self.thumbs_dir, image_id, source)

    def _put_bytes(self, image_id: str, data: bytes, name: str, fmt: str, suffix: str, run_id: str | None) -> None:
        with self._read() as conn:
            row = conn.execute("SELECT path FROM images WHERE image_id = ?", (image_id,)).fetchone()
        path = self.path / row[0] if row else self.images_dir / f"{image_id}{suffix}"
        if not path.is_file() or path.stat().st_size != len(data):
            write_atomic(path, data)
        with self._write() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
            conn.execute(
                "INSERT OR IGNORE INTO images (image_id, name, format, suffix, path, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (image_id, name, fmt, suffix, path.relative_to(self.path).as_posix(), len(data), now_iso()),
            )
            if run_id is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO run_images (run_id, image_id, name) VALUES (?, ?, ?)",
                    (run_id, image_id, name),
                )

    def run_images(self, run_id: str) -> dict[str, ImageSource]:
        """image_id -> source of every image kept for the run (named as in that run), like the session's images."""
        with self._read() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(
                "SELECT ri.image_id, ri.name, i.path FROM run_images ri JOIN images i USING (image_id) "
                "WHERE ri.run_id = ? ORDER BY ri.rowid",
                (run_id,),
            ).fetchall()
        out: dict[str, ImageSource] = {}
        for image_id, name, rel in rows:
            if image_id not in out and (self.path / rel).is_file():
                out[image_id] = ImageSource(name, path=self.path / rel, image_id=image_id)
        return out

    def stored_images(self) -> dict[str, ImageSource]:
        """image_id -> source of every image kept in the store (named as first kept)."""
        with self._read() as conn:
            rows = conn.execute("SELECT image_id, name, path FROM images ORDER BY rowid").fetchall()
        return {
            i: ImageSource(n, path=self.path / rel, image_id=i) for i, n, rel in rows if (self.path / rel).is_file()
        }
