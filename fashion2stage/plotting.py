"""Overlay pictures of an ImagePrediction, for people to look at (``ImagePrediction.plot``, ``predict --overlays``).

The photo keeps one short label per box (number, type, score) placed where it covers no other label; each
garment's attributes go in a side panel to the right, under the same number and box colour, so nothing is written
over anything else however many garments there are. Landmarks are dots in the box colour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from fashion2stage.results import ImagePrediction

# RGB, distinct on photos and on the dark panel
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
PANEL = (32, 32, 32)
TEXT = (235, 235, 235)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font when Pillow has FreeType
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _place(box, size: tuple[int, int], taken: list, w: int, h: int) -> tuple[int, int]:
    """Top-left corner for a label of ``size`` near ``box``: above it, inside its top, inside its bottom, or below
    it, the first spot inside the image that covers no label placed so far (else the least covered one)."""
    x1, y1, x2, y2 = box
    tw, th = size
    x = int(min(max(x1, 0), max(w - tw, 0)))
    best, best_cover = None, None
    for y in (y1 - th, y1, y2 - th, y2):
        y = int(min(max(y, 0), max(h - th, 0)))
        rect = (x, y, x + tw, y + th)
        cover = sum(max(0, min(rect[2], t[2]) - max(rect[0], t[0])) * max(0, min(rect[3], t[3]) - max(rect[1], t[1]))
                    for t in taken)
        if cover == 0:
            return x, y
        if best_cover is None or cover < best_cover:
            best, best_cover = (x, y), cover
    return best


def draw_overlay(image: np.ndarray, pred: ImagePrediction) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (max(H, panel height), W + panel width, 3) uint8 RGB: the photo with boxes, labels
    and landmarks, and the attribute panel on its right. ``image`` is not modified."""
    h, w = image.shape[:2]
    unit = max(h, w) / 800.0  # sizes follow the photo so that labels read the same at any resolution
    line = max(2, round(3 * unit))
    big, small = _font(max(12, round(18 * unit))), _font(max(11, round(15 * unit)))
    pad = max(3, round(4 * unit))

    photo = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(photo)
    taken: list[tuple[int, int, int, int]] = []
    labels = []
    for n, g in enumerate(pred.garments):
        colour = PALETTE[n % len(PALETTE)]
        box = [round(v) for v in g.box]
        draw.rectangle(box, outline=colour, width=line)
        r = max(3, round(4 * unit))
        for x, y, _ in g.keypoints.values():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(255, 255, 255), width=1)
        labels.append((n, colour, box, f"{n + 1} {g.type} {g.score:.2f}"))
    for n, colour, box, text in labels:  # after every box, so no box line crosses a label
        left, top, right, bottom = draw.textbbox((0, 0), text, font=big)
        size = (right + 2 * pad, bottom + 2 * pad)
        x, y = _place(box, size, taken, w, h)
        taken.append((x, y, x + size[0], y + size[1]))
        draw.rectangle(taken[-1], fill=colour)
        draw.text((x + pad, y + pad), text, fill=_ink(colour), font=big)

    rows = _panel_rows(pred)
    measure = ImageDraw.Draw(photo)
    row_h = measure.textbbox((0, 0), "Hg", font=big)[3] + pad
    text_w = max([measure.textbbox((0, 0), t, font=big if kind == "head" else small)[2] + (0 if kind == "head" else 3 * pad)
                  for kind, _, t in rows] + [0])
    swatch = row_h - pad
    panel_w = max(round(220 * unit), text_w + swatch + 4 * pad) if rows else 0
    gap = row_h // 3  # between one garment's rows and the next garment's
    panel_h = 2 * pad + len(rows) * row_h + gap * sum(kind == "head" for kind, _, _ in rows)
    canvas = Image.new("RGB", (w + panel_w, max(h, panel_h)), PANEL)
    canvas.paste(photo, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for kind, n, text in rows:
        x = w + 2 * pad
        if kind == "head":
            y += gap if y > pad else 0
            if n is not None:
                colour = PALETTE[n % len(PALETTE)]
                draw.rectangle([x, y + 1, x + swatch, y + swatch], fill=colour)
                x += swatch + pad
            draw.text((x, y), text, fill=TEXT, font=big)
        else:
            draw.text((x + swatch + pad, y + 2), text, fill=TEXT, font=small)
        y += row_h
    return np.asarray(canvas)


def _panel_rows(pred: ImagePrediction) -> list[tuple[str, int | None, str]]:
    """(kind, garment index, text): a heading per garment, then its attributes, most confident first; then the
    image-level answers that no garment gave (read from the whole image)."""
    rows = []
    for n, g in enumerate(pred.garments):
        rows.append(("head", n, f"{n + 1} {g.type} {g.score:.2f}"))
        for key, a in sorted(g.attributes.items(), key=lambda kv: -kv[1].score):
            rows.append(("attr", n, f"{key}: {a.value} {a.score:.2f}"))
    whole = [(k, a) for k, a in pred.attributes.items() if a.garment is None]
    if whole:
        rows.append(("head", None, "whole image"))
        rows.extend(("attr", None, f"{k}: {a.value} {a.score:.2f}") for k, a in whole)
    if not rows:
        rows.append(("head", None, "no garment found"))
    return rows
