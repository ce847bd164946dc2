"""Any Pillow image mode to 8-bit RGB (core.images' last decoding step): 16/32-bit and float grey scaled, not clipped,
to 8 bits; alpha, plain or premultiplied, composited on white; what was done noted for the user."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode to RGB: 16/32-bit and float grey scaled to 8 bits, alpha composited on white."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode == "I":
        grey, wide = _int_to_u8(np.asarray(im))
        notes.append("32-bit integer scaled to 8-bit" if wide else "16-bit scaled to 8-bit")
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        notes.append("32-bit float scaled to 8-bit")
        return Image.fromarray(_float_to_u8(np.asarray(im))).convert("RGB")
    if mode == "La":  # premultiplied: over white is L + (255 - A)
        lum, alpha = (np.asarray(c, dtype=np.uint16) for c in im.split())
        if alpha.min() < 255:
            notes.append("alpha composited on white")
        return Image.fromarray(np.minimum(lum + 255 - alpha, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        return _over_white(im.convert("RGBA"), notes)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return im.convert("RGB")


def _over_white(rgba: Image.Image, notes: list[str]) -> Image.Image:
    if rgba.getchannel("A").getextrema()[0] == 255:
        return rgba.convert("RGB")
    notes.append("alpha composited on white")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _int_to_u8(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """(8-bit grey, wider than 16 bits): 16-bit values by /257, rounded; wider data scaled by its range."""
    a = a.astype(np.int64, copy=False)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo >= 0 and hi <= 65535:
        return ((a * 2 + 257) // 514).astype(np.uint8), False  # round(a / 257)
    lo = min(lo, 0)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8), True
    return np.rint((a - lo) * 255.0 / (hi - lo)).astype(np.uint8), True


def _float_to_u8(a: np.ndarray) -> np.ndarray:
    """Float grey: [0, 1] -> x255, [0, 255] as is, otherwise min-max; NaN/inf become 0."""
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    a = np.where(finite, a, 0.0)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a
    else:
        scaled = (a - lo) * 255.0 / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
