"""The Python API: ``Reader()(images) -> list[ImagePrediction]``, the same pipeline ``fashion2stage predict`` runs.

    from fashion2stage import Reader
    reader = Reader()                       # the shipped model; or Reader(detector="runs/detect/frcnn", ...)
    for pred in reader(["a.jpg", "b.jpg"]):  # paths, folders, globs, .txt lists, RGB arrays, PIL images, or a list
        print(pred.to_json())               # the predictions.jsonl line
        overlay = pred.plot()               # RGB array
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from fashion2stage.errors import ImageReadError
from fashion2stage.images import Photo, load_photo, rgb_from_pil
from fashion2stage.io import safe_name
from fashion2stage.app.pipeline import Pipeline, default_batch_size, load_pipeline
from fashion2stage.app.sources import SourceError, expand_source
from fashion2stage.results import ImagePrediction

ImageInput = Union[str, Path, np.ndarray, "PIL.Image.Image"]  # noqa: F821


class Reader:
    """Load the three models once; call on images as often as wanted.

    Run folders not given come from the shipped bundle (``use_default=False``: only those given). ``runtime``:
    ``"auto"`` (ONNX Runtime on the CPU where installed, exported once into a per-user cache; else torch), ``"onnx"``
    or ``"torch"``, as ``predict --runtime`` (docs/runtime.md); ``threads`` sets its intra-op threads. ``conf`` is the
    detector's score threshold; ``flip_tta`` averages attribute probabilities over a mirror image; ``single_item``
    True reads each photo as one item (catalogue photos: at most one garment, typed with the item-type head), False
    as several, None (default) as the attribute model's photo-kind head judges it (Pipeline; docs/OUTPUT.md).
    """

    def __init__(self, detector: str | Path | None = None, classifier: str | Path | None = None,
                 keypoints: str | Path | None = None, device: str = "cpu", runtime: str = "auto",
                 conf: float = 0.25, flip_tta: bool = False, threads: int = 0, use_default: bool = True,
                 batch_size: int = 0, single_item: bool | None = None):
        self.pipeline: Pipeline = load_pipeline(detector, classifier, keypoints, device=device,
                                                use_default=use_default, runtime=runtime, threads=threads,
                                                conf=conf, flip_tta=flip_tta, single_item=single_item)
        self.batch_size = batch_size or default_batch_size(runtime, device)

    def __call__(self, images: ImageInput | list[ImageInput]) -> list[ImagePrediction]:
        """One ImagePrediction per image, in order. A path may also be a folder (its images, searched recursively,
        sorted), a glob pattern or a ``.txt`` list of paths, as ``predict SOURCE`` takes them
        (fashion2stage/app/sources.py); each stands for its images, in place. Paths are decoded upright (EXIF) to
        RGB, at the resolution the models use (images.load_photo); an unreadable path, a folder, pattern or list with
        no image, or an image the models fail on, gives an ImagePrediction with ``error`` set, as ``predict`` writes
        it. An in-memory image is named ``<image N>`` (N its position among the images of this call); a path keeps
        the string it was given (a folder's images: the folder joined with their path), made safe by
        ``io.safe_name``."""
        items = _expand(images if isinstance(images, (list, tuple)) else [images])
        out: list[ImagePrediction | None] = [None] * len(items)
        batch: list[tuple[int, str, Photo]] = []
        for n, item in enumerate(items):
            if isinstance(item, ImagePrediction):  # a source that holds no image
                out[n] = item
                continue
            name, photo, error = _decode(item, n)
            if photo is None:
                out[n] = ImagePrediction(image=name, error=error)
                continue
            batch.append((n, name, photo))
            if len(batch) == self.batch_size:
                self._run(batch, out)
                batch = []
        if batch:
            self._run(batch, out)
        return out

    def _run(self, batch: list[tuple[int, str, Photo]], out: list) -> None:
        preds = self.pipeline([p.pixels for _, _, p in batch], names=[name for _, name, _ in batch],
                              sizes=[(p.width, p.height) for _, _, p in batch])
        for (n, _, _), pred in zip(batch, preds):
            out[n] = pred


def _expand(items: list) -> list:
    """``items`` with each folder, glob pattern and ``.txt`` list replaced by its image paths (an error record
    where it holds none)."""
    out = []
    for item in items:
        if not isinstance(item, (str, Path)) or _plain_file(item):
            out.append(item)
            continue
        try:
            paths = expand_source(item)
        except SourceError as e:
            out.append(ImagePrediction(image=e.source, error=e.problem))
            continue
        out.extend([item] if paths is None else paths)
    return out


def _plain_file(path: str | Path) -> bool:
    """A file that stands for itself (sources.expand_source would say None), told without it: the common case."""
    return os.path.isfile(path) and not str(path).lower().endswith(".txt")


def _decode(item, n: int) -> tuple[str, Photo | None, str | None]:
    if isinstance(item, (str, Path)):
        text = str(item)
        name = text if text.isprintable() else safe_name(text)  # safe_name's own first test, without the call
        try:
            return name, load_photo(item), None
        except ImageReadError as e:
            return name, None, e.problem
    if isinstance(item, np.ndarray):  # scaled to the models' size by the pipeline
        return f"<image {n}>", Photo.of(_check_array(item, n)), None
    if hasattr(item, "mode") and hasattr(item, "getexif"):  # a PIL image, without importing PIL for the check
        return f"<image {n}>", Photo.of(rgb_from_pil(item)), None
    raise TypeError(f"image {n}: expected a path, a numpy RGB array or a PIL image, got {type(item).__name__}")


def _check_array(a: np.ndarray, n: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB as given; (H, W) or (H, W, 1) grey becomes RGB; anything else is refused."""
    if a.dtype != np.uint8:
        raise ValueError(f"image {n}: expected a uint8 array, got {a.dtype}")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        a = np.repeat(a.reshape(a.shape[0], a.shape[1], 1), 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image {n}: expected an (H, W, 3) RGB array, got shape {a.shape}")
    return np.ascontiguousarray(a)
