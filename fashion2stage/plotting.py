"""Overlay pictures of an ImagePrediction, for people to look at (``ImagePrediction.plot``, ``predict --overlays``).

The photo keeps one short label per box (number, type, score), placed where it covers no other label; where the
photo is too crowded for that, the box keeps only its number, or no label at all, and the side panel names it.
The panel, right of the photo, lists each garment under its number and box colour with its attributes in one fixed
order (the attribute model's key order), then a legend of the landmarks: each landmark name has its own dot colour,
ringed in the colour of its garment's box. Nothing is written over anything else however many garments there are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from fashion2stage.results import ImagePrediction

# RGB, distinct on photos and on the dark panel: one per garment (box, label, dot ring)
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
# one per landmark name, in the order the garments list them (a dot's fill; the legend names them)
LANDMARK_PALETTE = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (0, 255, 255), (255, 0, 255), (255, 255, 0),
                    (0, 0, 255), (0, 200, 0), (255, 128, 0), (128, 0, 0), (0, 128, 128), (170, 110, 40)]
PANEL = (32, 32, 32)
TEXT = (235, 235, 235)

Rect = tuple[int, int, int, int]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font when Pillow has FreeType
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(box, size: tuple[int, int], taken: list[Rect], w: int, h: int) -> tuple[int, int] | None:
    """Top-left corner for a label of ``size`` at ``box``: above it, inside its top, inside its bottom or below it,
    at its left or its right edge; the first spot inside the image that covers no label of ``taken``, or None."""
    x1, y1, x2, y2 = box
    tw, th = size
    if tw > w or th > h:
        return None
    for y in (y1 - th, y1, y2 - th, y2):
        for x in (x1, x2 - tw):
            x, y = int(min(max(x, 0), w - tw)), int(min(max(y, 0), h - th))
            if not any(_overlaps((x, y, x + tw, y + th), t) for t in taken):
                return x, y
    return None


def _landmark_colours(pred: ImagePrediction) -> dict[str, tuple[int, int, int]]:
    """A dot colour per landmark name drawn, in the order the garments list them (their label set's order)."""
    names: list[str] = []
    for g in pred.garments:
        names += [n for n in g.keypoints if n not in names]
    return {n: LANDMARK_PALETTE[i % len(LANDMARK_PALETTE)] for i, n in enumerate(names)}


def draw_overlay(image: np.ndarray, pred: ImagePrediction) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (max(H, panel height), W + panel width, 3) uint8 RGB: the photo with boxes, labels
    and landmarks, and the panel on its right. ``image`` is not modified."""
    h, w = image.shape[:2]
    unit = max(h, w) / 800.0  # sizes follow the photo so that labels read the same at any resolution
    line = max(2, round(3 * unit))
    big, small = _font(max(12, round(18 * unit))), _font(max(11, round(15 * unit)))
    pad = max(3, round(4 * unit))
    marks = _landmark_colours(pred)

    photo = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(photo)
    boxes = []
    for n, g in enumerate(pred.garments):
        colour = PALETTE[n % len(PALETTE)]
        box = [round(v) for v in g.box]
        boxes.append(box)
        draw.rectangle(box, outline=colour, width=line)
        r = max(4, round(5 * unit))
        for name, (x, y, _) in g.keypoints.items():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=marks[name], outline=colour, width=max(2, r // 2))
    for n, text, rect in _labels(pred, boxes, draw, big, pad, w, h):  # after every box: no box line crosses one
        colour = PALETTE[n % len(PALETTE)]
        draw.rectangle(rect, fill=colour)
        draw.text((rect[0] + pad, rect[1] + pad), text, fill=_ink(colour), font=big)
    return _with_panel(photo, _panel_rows(pred, marks), big, small, pad, unit)


def _labels(pred: ImagePrediction, boxes: list, draw: ImageDraw.ImageDraw, font, pad: int, w: int,
            h: int) -> list[tuple[int, str, Rect]]:
    """(garment index, text, rectangle) of each label drawn on the photo, none covering another: the full label
    where it fits, else the number alone, else nothing (the panel names every garment anyway)."""
    out: list[tuple[int, str, Rect]] = []
    for n, (g, box) in enumerate(zip(pred.garments, boxes)):
        for text in (f"{n + 1} {g.type} {g.score:.2f}", f"{n + 1}"):
            right, bottom = draw.textbbox((0, 0), text, font=font)[2:]
            size = (right + 2 * pad, bottom + 2 * pad)
            spot = _place(box, size, [r for _, _, r in out], w, h)
            if spot is not None:
                out.append((n, text, (spot[0], spot[1], spot[0] + size[0], spot[1] + size[1])))
                break
    return out


def _with_panel(photo: Image.Image, rows, big, small, pad: int, unit: float) -> np.ndarray:
    """``photo`` with the panel of ``rows`` (kind, colour, text) on its right."""
    w, h = photo.size
    measure = ImageDraw.Draw(photo)
    row_h = measure.textbbox((0, 0), "Hg", font=big)[3] + pad
    swatch = row_h - pad
    text_w = max([measure.textbbox((0, 0), t, font=big if kind == "head" else small)[2]
                  + (0 if kind == "head" else 3 * pad) for kind, _, t in rows] + [0])
    panel_w = max(round(220 * unit), text_w + swatch + 4 * pad) if rows else 0
    gap = row_h // 3  # between one garment's rows and the next garment's
    panel_h = 2 * pad + len(rows) * row_h + gap * sum(kind == "head" for kind, _, _ in rows)
    canvas = Image.new("RGB", (w + panel_w, max(h, panel_h)), PANEL)
    canvas.paste(photo, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for kind, colour, text in rows:
        x = w + 2 * pad
        if kind == "head":
            y += gap if y > pad else 0
            if colour is not None:
                draw.rectangle([x, y + 1, x + swatch, y + swatch], fill=colour)
                x += swatch + pad
            draw.text((x, y), text, fill=TEXT, font=big)
        elif kind == "mark":
            r = swatch // 3
            cx, cy = x + swatch // 2, y + 2 + swatch // 2
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=TEXT, width=1)
            draw.text((x + swatch + pad, y + 2), text, fill=TEXT, font=small)
        else:
            draw.text((x + swatch + pad, y + 2), text, fill=TEXT, font=small)
        y += row_h
    return np.asarray(canvas)


def _panel_rows(pred: ImagePrediction, marks: dict[str, tuple[int, int, int]]) -> list[tuple[str, object, str]]:
    """(kind, colour, text): a heading per garment and its attributes in one fixed order (the image-level keys'
    order, which is the attribute model's); the image-level answers no garment gave (read from the whole image);
    then one legend row per landmark name drawn."""
    order = list(pred.attributes)
    for g in pred.garments:
        order += [k for k in g.attributes if k not in order]
    rows = []
    for n, g in enumerate(pred.garments):
        rows.append(("head", PALETTE[n % len(PALETTE)], f"{n + 1} {g.type} {g.score:.2f}"))
        rows += [("attr", None, f"{k}: {g.attributes[k].value} {g.attributes[k].score:.2f}")
                 for k in order if k in g.attributes]
    whole = [(k, a) for k, a in pred.attributes.items() if a.garment is None]
    if whole:
        rows.append(("head", None, "whole image"))
        rows += [("attr", None, f"{k}: {a.value} {a.score:.2f}") for k, a in whole]
    if not pred.garments:
        rows.insert(0, ("head", None, "no garment found"))
    if marks:
        rows.append(("head", None, "landmarks"))
        rows += [("mark", colour, name) for name, colour in marks.items()]
    return rows
