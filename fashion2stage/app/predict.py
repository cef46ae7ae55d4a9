"""``predict`` over a folder: list images, decode in the background, run the pipeline in batches, stream JSONL.

Memory stays flat however many images there are: only the file list and one window of decoded images are held;
each batch's lines are written (and flushed) before the next batch is decoded. Lines are written in input order.
``resume`` keeps the lines already written (a torn last line from a killed run is dropped) and skips those images.
One process at a time writes an output folder (a lock beside predictions.jsonl); a line of an earlier file that is
not a predictions line stops ``resume`` with one line naming the file and line. ``image`` is the file's relative
path made safe by ``io.safe_name`` (control characters written as ``\\xNN``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.images import Photo, load_photo
from fashion2stage.io import appending, folder_lock, naming, safe_name, write_text_atomic
from fashion2stage.app.pipeline import Pipeline
from fashion2stage.results import ImagePrediction

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def list_images(folder: str | Path, shard: tuple[int, int] = (0, 1)) -> list[str]:
    """Image paths under ``folder`` (recursive), relative POSIX, sorted; ``shard=(i, n)`` keeps every n-th from i.

    Every name with an image suffix that is not a folder is listed, whether it can be read or not (a symbolic link
    loop, a broken link, a file without read permission), so that predict gives it an error line instead of
    leaving it out. A sub-folder that cannot be opened is listed as ``name/`` for the same reason. Links to
    folders are not followed (a link loop would never end).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    try:
        os.scandir(root).close()
    except OSError as e:
        raise FileNotFoundError(f"{root}: cannot open folder: {e.strerror}") from None
    files = []

    def unlistable(err: OSError) -> None:
        files.append(Path(err.filename).relative_to(root).as_posix() + "/")

    for here, _, names in os.walk(root, onerror=unlistable):
        files += [(Path(here) / name).relative_to(root).as_posix() for name in names
                  if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")]
    files.sort()
    i, n = shard
    return files[i::n]


def _decode(root: Path, rel: str) -> tuple[str, Photo | None, str | None]:
    if rel.endswith("/"):  # a folder list_images could not open
        try:
            os.scandir(root / rel).close()
            return rel, None, "folder could not be listed"
        except OSError as e:
            return rel, None, f"cannot open folder: {e.strerror}"
    try:
        return rel, load_photo(root / rel), None
    except ImageReadError as e:
        return rel, None, e.problem


def decoded(root: Path, files: list[str], window: int, workers: int = 2) -> Iterator[tuple[str, Photo | None, str | None]]:
    """Decode files in background threads (PIL and cv2 release the GIL), at most ``window`` ahead, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        it = iter(files)
        for rel in it:
            pending.append(pool.submit(_decode, root, rel))
            if len(pending) >= window:
                break
        while pending:
            result = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode, root, nxt))
            yield result


def read_done(jsonl: Path) -> list[str]:
    """Lines of a previous run. A torn last line (no newline at its end, not JSON: the run was killed while writing
    it) is dropped; any other line that is not a JSON object naming its ``image`` raises DataError with its number."""
    if not jsonl.exists():
        return []
    with naming(jsonl):
        data = jsonl.read_bytes()
    lines = data.split(b"\n")
    good = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = n == len(lines)  # the text after the last newline
        try:
            line = raw.decode("utf-8")
            obj = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if torn:
                break
            why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else f"not JSON ({e.msg})"
            raise DataError(jsonl, f"{why}: not a predictions line; fix or delete it, or run without --resume",
                            line=n) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
            raise DataError(jsonl, 'not a predictions line (a JSON object with an "image" string); fix or delete '
                                   "it, or run without --resume", line=n)
        good.append(line)
    return good


def input_files(root: Path, files: list[str] | None, shard: tuple[int, int]) -> list[str]:
    """The images ``predict`` reads, relative to ``root``: ``files`` if given, else every image under it; one shard."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    files = list_images(root, shard) if files is None else list(files)[shard[0]::shard[1]]
    if not files:
        raise FileNotFoundError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def prepare_output(out_dir: str | Path, files: list[str], resume: bool) -> tuple[Path, list[str], int]:
    """Make ``out_dir/predictions.jsonl`` ready for appending: removed, or with ``resume`` cut to its whole lines.
    Returns the file, the ``files`` not yet in it (input order kept) and how many were already there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "predictions.jsonl"
    if not resume:
        jsonl.unlink(missing_ok=True)
        return jsonl, list(files), 0
    done_lines = read_done(jsonl)
    write_text_atomic(jsonl, "".join(l + "\n" for l in done_lines))  # drop a torn tail before appending
    done = {json.loads(l)["image"] for l in done_lines}
    return jsonl, [f for f in files if safe_name(f) not in done], sum(safe_name(f) in done for f in files)


def output_lock(out_dir: str | Path):
    """The lock of an output folder, held while predictions.jsonl is written (``.predictions.jsonl.lock`` in it):
    a second ``predict`` on the same ``--out`` is refused at once with one line."""
    out = Path(out_dir)
    with naming(out):
        out.mkdir(parents=True, exist_ok=True)
    return folder_lock(out / ".predictions.jsonl.lock", str(out / "predictions.jsonl"))


def jsonl_line(pred: ImagePrediction) -> str:
    """One line of predictions.jsonl, newline included."""
    return pred.to_json() + "\n"


@dataclass
class PredictSummary:
    images: int = 0
    skipped: int = 0  # already in the output (resume)
    garments: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this process, all its threads: the cost, steadier than wall time on a busy machine
    stage_seconds: dict = field(default_factory=dict)  # detector / attributes / keypoints / waiting for decoding

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds else 0.0
        s = (f"{self.images} images ({rate:.2f} img/s, {self.cpu_seconds / max(self.images, 1):.3f} CPU-s/img), "
             f"{self.garments} garments, {len(self.errors)} unreadable"
             + (f", {self.skipped} already done" if self.skipped else ""))
        if self.seconds and self.stage_seconds:
            s += " | time: " + ", ".join(f"{k} {100 * v / self.seconds:.0f}%" for k, v in self.stage_seconds.items())
        return s


def predict_folder(pipeline: Pipeline, images_dir: str | Path, out_dir: str | Path, batch_size: int = 8,
                   resume: bool = False, shard: tuple[int, int] = (0, 1), progress: bool = True,
                   on_batch=None, files: list[str] | None = None) -> PredictSummary:
    """Write ``out_dir/predictions.jsonl`` (one line per image, input order, ``ImagePrediction.to_json()``).
    ``on_batch(predictions)`` sees each batch's ImagePredictions after they are written (for the optional writers;
    ``orig_img`` holds the decoded image, None where decoding failed).
    ``files``: these paths relative to ``images_dir`` instead of every image in it (a missing one is an error line)."""
    root = Path(images_dir)
    files = input_files(root, files, shard)
    with output_lock(out_dir):
        return _predict_folder(pipeline, root, out_dir, files, batch_size, resume, progress, on_batch)


def _predict_folder(pipeline: Pipeline, root: Path, out_dir, files: list[str], batch_size: int, resume: bool,
                    progress: bool, on_batch) -> PredictSummary:
    jsonl, files, skipped = prepare_output(out_dir, files, resume)
    summary = PredictSummary(skipped=skipped)

    from tqdm import tqdm  # noqa: PLC0415

    bar = tqdm(total=len(files), unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    stages_before = dict(pipeline.seconds)
    waiting = 0.0  # the main thread blocked on the background decoder
    # one write per batch, flushed: a killed run leaves whole lines (at worst one torn line, dropped on resume)
    with appending(jsonl) as write:
        batch: list[tuple[str, Photo | None, str | None]] = []
        items = decoded(root, files, window=2 * batch_size)
        while True:
            t0 = time.perf_counter()
            item = next(items, None)
            waiting += time.perf_counter() - t0
            if item is None:
                break
            batch.append(item)
            if len(batch) == batch_size:
                _run_batch(pipeline, batch, write, summary, on_batch)
                bar.update(len(batch))
                batch = []
        if batch:
            _run_batch(pipeline, batch, write, summary, on_batch)
            bar.update(len(batch))
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.cpu_seconds = time.process_time() - cpu_start
    summary.stage_seconds = {k: v - stages_before.get(k, 0.0) for k, v in pipeline.seconds.items()}
    summary.stage_seconds["decode wait"] = waiting
    return summary


def predict_batch(pipeline: Pipeline, batch: list[tuple[str, Photo | None, str | None]]) -> list[ImagePrediction]:
    """One ImagePrediction per decoded ``(rel, photo, problem)``, in order, named ``safe_name(rel)``: a photo that
    failed to decode (None) becomes its error record, one the models fail on too (Pipeline.__call__)."""
    ok = [(safe_name(rel), photo) for rel, photo, _ in batch if photo is not None]
    results = iter(pipeline([p.pixels for _, p in ok], names=[name for name, _ in ok],
                            sizes=[(p.width, p.height) for _, p in ok]) if ok else [])
    return [ImagePrediction(image=safe_name(rel), error=err) if photo is None else next(results)
            for rel, photo, err in batch]


def _run_batch(pipeline: Pipeline, batch, write, summary: PredictSummary, on_batch) -> None:
    preds = predict_batch(pipeline, batch)
    for p in preds:
        if p.error is not None:
            summary.errors.append((p.image, p.error))
        else:
            summary.garments += len(p.garments)
    write("".join(jsonl_line(p) for p in preds))
    summary.images += len(batch)
    if on_batch is not None:
        on_batch(preds)
