"""Trustworthy image loading: every readable photo becomes (H, W, 3) uint8 RGB, upright; everything else fails loudly.

The pixel frame of every box and keypoint in the project is the image *after* EXIF orientation, so both
:func:`load_image` and :func:`image_size` apply it. A file that cannot be decoded raises
:class:`~fashion2stage.errors.ImageReadError` with one line naming the file and the problem, never a PIL traceback.

Only the formats of :data:`FORMATS` are opened (never EPS/PostScript, which PIL hands to Ghostscript).
:func:`load_photo` decodes at the resolution the models use: at most :data:`MAX_SIDE` pixels on the longer side
(a large JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself, ``Image.draft``), and keeps the original
size, the frame predictions are reported in (docs/RELIABILITY.md, "Large photos").
"""
from __future__ import annotations

import errno
import io
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fashion2stage.errors import ImageReadError, ImageTooLargeError

# Larger images are refused from the header, before any pixel is decoded (a decompression bomb: a few KB of PNG
# can claim 10^10 pixels). Kept below PIL's own warning threshold (Image.MAX_IMAGE_PIXELS, ~89.5 MP) so that this
# check is the one users normally meet; PIL's own limit is still enforced below as a backstop.
MAX_PIXELS = 80_000_000

# The only formats opened (PIL's plugin names; JPEG includes the MPO files of many cameras). Others, EPS and PS
# among them, are "not an image": PIL would run Ghostscript on a PostScript file where it is installed.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_POSTSCRIPT_MAGIC = (b"%!PS", b"\xc5\xd0\xd3\xc6")  # PostScript / EPS text, DOS EPS binary header

# load_photo decodes no photo larger than this on its longer side: 2.5 times the largest side the shipped detector
# looks at (665 px) and over 6 times its crops (256 px), so the models see what they would see at full size, while a
# 25 MP photo costs 7.7 MB instead of 75 MB of pixels (BENCHMARKS.md, "Large photos").
MAX_SIDE = 1600

_EXIF_ORIENTATION_TAG = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees (width and height trade places)


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose that makes the image upright


@dataclass(frozen=True)
class Photo:
    """A decoded photo: ``pixels`` (h, w, 3) uint8 RGB, upright, at most the decoder's ``max_side`` on its longer side;
    ``width`` x ``height`` the size of the original upright photo, the frame boxes and landmarks are reported in."""

    pixels: np.ndarray
    width: int
    height: int

    @classmethod
    def of(cls, pixels: np.ndarray) -> Photo:
        """An image held at its own size."""
        return cls(pixels, int(pixels.shape[1]), int(pixels.shape[0]))


def _pil_open(source: Path | io.BytesIO) -> Image.Image:
    """PIL's own ``Image.open``, for the formats of :data:`FORMATS` only. Importing ultralytics replaces
    ``PIL.Image.open`` with a wrapper that, on a file PIL cannot identify, tries to pip-install pi-heif and raises
    ImportError offline; a non-image must stay a clear error."""
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)(source, formats=FORMATS)


def _is_postscript(path: Path, data: bytes | None) -> bool:
    try:
        if data is None:
            with open(path, "rb") as f:
                data = f.read(4)
        return bytes(data[:4]) in _POSTSCRIPT_MAGIC
    except OSError:
        return False


def _stat_problem(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)" if path.is_symlink() else "file not found"
    if err.errno == errno.EACCES:
        return "cannot read: permission denied"
    return f"cannot read: {err.strerror or err}"


def _open(path: Path, data: bytes | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open lazily (header only) and refuse missing, empty, non-image and too-large files. With ``data`` the image is
    those bytes (an upload) and ``path`` only names it in errors. ``max_pixels`` defaults to ``MAX_PIXELS``."""
    if data is None:
        try:
            st = path.stat()
        except OSError as e:
            raise ImageReadError(path, _stat_problem(path, e)) from None
        except ValueError:  # a NUL character: no file can have this name
            raise ImageReadError(path, "invalid file name (NUL character)") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(path, "not a regular file")
        size = st.st_size
    else:
        size = len(data)
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    limit = MAX_PIXELS if max_pixels is None else max_pixels  # read at call time: tests and callers may change it
    try:
        im = _pil_open(path if data is None else io.BytesIO(data))
    except PermissionError:
        raise ImageReadError(path, "cannot read: permission denied") from None
    except FileNotFoundError:  # removed since the stat above
        raise ImageReadError(path, "file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(path, f"image too large (decompression bomb?): {e}") from None
    except UnidentifiedImageError:
        if _is_postscript(path, data):
            raise ImageReadError(path, f"PostScript/EPS is not accepted (only {', '.join(FORMATS)})") from None
        raise ImageReadError(path, "not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(path, f"cannot open image: {e}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        im.close()
        raise ImageReadError(path, f"image has zero size {w}x{h}")
    if w * h > limit:
        im.close()
        name = "MAX_PIXELS" if max_pixels is None else "the limit"
        raise ImageTooLargeError(path, f"image too large: {w}x{h} = {w * h:,} pixels > {name} {limit:,}")
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        # PIL's own bomb limit as a backstop when MAX_PIXELS was raised above it. Compared here rather than by
        # turning PIL's warning into an error: warnings.catch_warnings is not thread-safe and predict decodes in threads.
        im.close()
        raise ImageTooLargeError(path, f"image too large (decompression bomb?): {w}x{h} = {w * h:,} pixels "
                                       f"> PIL.Image.MAX_IMAGE_PIXELS {Image.MAX_IMAGE_PIXELS:,}")
    return im


def _orientation(im: Image.Image, path: Path) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception as e:  # noqa: BLE001  (PIL raises many types on malformed EXIF)
        raise ImageReadError(path, f"unreadable EXIF data: {e}") from None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of the image after EXIF orientation, read from the header only (no pixel decoding)."""
    path = Path(path)
    with _open(path) as im:
        w, h = im.size
        if _orientation(im, path) in _SWAPS_SIDES:
            w, h = h, w
    return w, h


def _to_uint8_gray(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float single-channel images to 8-bit "L".

    ``I;16*`` spans 0..65535 and is divided by 257. ``I`` (how PIL often opens 16-bit PNGs) is taken as 8-bit
    if its values fit, as 16-bit if they fit that, else stretched from its min to its max. ``F`` is taken as
    0..1 if its values fit, else clipped to 0..255.
    """
    a = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        a = a / 257.0
    elif im.mode == "I":
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 65535:
            a = (a - lo) / max(hi - lo, 1.0) * 255.0
        elif hi > 255:
            a = a / 257.0
    elif im.mode == "F":
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0 and a.max() <= 1.0:
            a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited on white (a transparent product shot has a white page)."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_uint8_gray(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def load_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to an array (H, W, 3) uint8 RGB in the upright (EXIF-oriented) pixel frame, full size."""
    return load_photo(path, max_pixels, max_side=None).pixels


def load_image_bytes(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image held in memory (an upload) exactly as :func:`load_image` decodes a file, with the same checks;
    ``name`` is what errors call it."""
    return load_photo_bytes(data, name, max_pixels, max_side=None).pixels


def load_photo(path: str | Path, max_pixels: int | None = None, max_side: int | None = MAX_SIDE) -> Photo:
    """Decode an image file upright to RGB, at most ``max_side`` pixels on its longer side (None: full size), with
    the original upright size."""
    path = Path(path)
    with _open(path, max_pixels=max_pixels) as im:
        return _decode(im, path, max_side)


def load_photo_bytes(data: bytes, name: str, max_pixels: int | None = None,
                     max_side: int | None = MAX_SIDE) -> Photo:
    """:func:`load_photo` of an image held in memory; ``name`` is what errors call it."""
    with _open(Path(name), data=bytes(data), max_pixels=max_pixels) as im:
        return _decode(im, Path(name), max_side)


def fitted_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` of a ``width`` x ``height`` image scaled to at most ``max_side`` on its longer side (each >= 1)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


# modes PIL resizes as they are (LA and RGBA with premultiplied alpha); others are made RGB first
_RESIZABLE = ("RGB", "L", "RGBA", "LA", "CMYK", "I", "F")


def _decode(im: Image.Image, path: Path, max_side: int | None = None) -> Photo:
    w, h = im.size  # as stored, before EXIF orientation (the longer side is the same either way)
    target = fitted_size(w, h, max_side)
    try:
        if target != (w, h) and im.format in ("JPEG", "MPO"):
            im.draft(None, target)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below target
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(path, f"image too large (decompression bomb?): {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(path, f"corrupt or truncated image: {e}") from None
    orientation = _orientation(im, path)  # malformed EXIF is refused the same way image_size refuses it
    width, height = (h, w) if orientation in _SWAPS_SIDES else (w, h)
    try:
        if im.size != target and im.mode in _RESIZABLE and "transparency" not in im.info:
            im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)  # before any full-size copy
        if orientation in _TRANSPOSE:
            im = im.transpose(_TRANSPOSE[orientation])
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"cannot apply EXIF orientation: {e}") from None
    try:
        rgb = _to_rgb(im)
        upright_target = (target[1], target[0]) if orientation in _SWAPS_SIDES else target
        if rgb.size != upright_target:  # a mode resized only once it is RGB (palette, transparency)
            rgb = rgb.resize(upright_target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (OSError, ValueError) as e:
        raise ImageReadError(path, f"cannot convert {im.mode} image to RGB: {e}") from None
    out = np.asarray(rgb, dtype=np.uint8)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ImageReadError(path, f"decoded to an unexpected shape {out.shape}")
    return Photo(np.ascontiguousarray(out), width, height)


def rgb_from_pil(im: Image.Image) -> np.ndarray:
    """A PIL image already in memory -> (H, W, 3) uint8 RGB, upright: the same orientation and mode conversion as
    :func:`load_image` (EXIF orientation applied when the image carries it)."""
    upright = ImageOps.exif_transpose(im)
    return np.ascontiguousarray(np.asarray(_to_rgb(upright), dtype=np.uint8))
