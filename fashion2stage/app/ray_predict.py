"""``predict --engine ray``: the same folder prediction as fashion2stage.app.predict, scheduled by Ray Data.

    file list (predict.input_files, on the driver)
      -> decoding in Ray tasks (predict._decode per file; an unreadable file becomes its error text)
      -> the pipeline in a pool of model actors (one GPU each, or CPU actors that share the cores), batched
      -> predictions.jsonl on the driver: the same ``ImagePrediction.to_json()`` lines, in input order

Ray brings what a hand-made ``--shard`` split lacks: it keeps every actor fed, retries a task whose worker died,
and spreads over the nodes of a cluster. Lines are written and flushed as their batches arrive (Ray Data keeps
input order), so a killed run leaves whole lines and ``resume`` skips them, exactly as ``predict --resume``.

Nothing here is a pipeline step of its own: decoding, the batch prediction and the output file are
fashion2stage.app.predict's functions. Ray is imported only when this runs (``pip install "fashion2stage[ray]"``).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fashion2stage.app.predict import (PredictSummary, _decode, input_files, jsonl_line, output_lock, predict_batch,
                                       prepare_output)
from fashion2stage.images import Photo
from fashion2stage.io import appending
from fashion2stage.results import ImagePrediction

DECODE_BATCH = 16  # files per block (given enough files) and per decoded chunk: amortises a task, spreads 60 photos
MAX_BLOCKS = 10_000  # 10 M photos: 1,000 per block, a retry redoes at most that many
START_ATTEMPTS = 3  # tries to start a local Ray node (see start_ray)
DECODE_CPUS = 0.5  # logical CPUs a decoding task asks for (a photo decodes ~20x faster than the models read it)
STAGES = ("decode", "detector", "attributes", "keypoints")
_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)  # an unreadable file's image: the column stays (H, W, 3) uint8


@dataclass
class RaySummary(PredictSummary):
    """``stage_seconds`` here are worker seconds summed over all tasks and actors, so the line gives them per image:
    what one image costs in each stage, whatever the number of actors."""

    actors: int = 0

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds else 0.0
        s = (f"{self.images} images ({rate:.1f} img/s, {self.actors} actors), {self.garments} garments, "
             f"{len(self.errors)} unreadable" + (f", {self.skipped} already done" if self.skipped else ""))
        done = self.images - len(self.errors)
        if done and self.stage_seconds:
            s += " | worker ms per image: " + ", ".join(
                f"{k} {1000 * v / (self.images if k == 'decode' else done):.0f}" for k, v in self.stage_seconds.items())
        return s


def decode_files(block: dict[str, np.ndarray], root: str) -> Iterator[dict[str, object]]:
    """Ray task: decode one block of relative paths (column ``image``) into ``pixels`` (h, w, 3) uint8 RGB, at most
    images.MAX_SIDE, with ``width`` and ``height`` of the original photo, and ``error`` ("" when readable; else the
    one-line problem, with an empty image), ``DECODE_BATCH`` files at a time so that a large block never holds more
    decoded photos than that."""
    for k in range(0, len(block["image"]), DECODE_BATCH):
        names = block["image"][k:k + DECODE_BATCH]
        pixels, sizes, errors, seconds = [], [], [], []
        for rel in names:
            t0 = time.perf_counter()
            _, photo, err = _decode(Path(root), str(rel))
            seconds.append(time.perf_counter() - t0)
            pixels.append(_NO_PIXELS if photo is None else photo.pixels)
            sizes.append((0, 0) if photo is None else (photo.width, photo.height))
            errors.append(err or "")
        yield {"image": names, "pixels": pixels, "width": np.array([w for w, _ in sizes]),
               "height": np.array([h for _, h in sizes]), "error": np.array(errors, dtype=object),
               "decode_s": np.array(seconds)}


class PipelineActor:
    """Ray actor: loads the models once (``load_pipeline(**models)``), then turns each batch of decoded images into
    its predictions.jsonl lines, with the seconds each stage took."""

    def __init__(self, models: dict, threads: int):
        if threads:
            import torch  # noqa: PLC0415

            torch.set_num_threads(threads)
        from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

        # ONNX Runtime's threads as torch's: this actor's share of the cores, unless the user gave --threads
        self.pipeline = load_pipeline(**{**models, "threads": models.get("threads") or threads})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [(str(rel), None if err else Photo(img, int(w), int(h)), str(err) or None)
                 for rel, img, w, h, err in zip(batch["image"], batch["pixels"], batch["width"], batch["height"],
                                                batch["error"])]
        before = dict(self.pipeline.seconds)
        preds = predict_batch(self.pipeline, items)
        n_ok = max(1, sum(p.error is None for p in preds))
        out = {"image": np.array([p.image for p in preds], dtype=object),
               "line": np.array([jsonl_line(p) for p in preds], dtype=object),
               "garments": np.array([len(p.garments) for p in preds]),
               "error": np.array([p.error or "" for p in preds], dtype=object), "decode_s": batch["decode_s"]}
        for stage, total in self.pipeline.seconds.items():  # this batch's seconds, spread over its readable images
            share = (total - before.get(stage, 0.0)) / n_ok
            out[f"{stage}_s"] = np.array([0.0 if p.error else share for p in preds])
        return out


def actor_resources(device: str, actors: int, threads: int, cluster_cpus: float) -> tuple[dict, int]:
    """Ray resources of one model actor and its torch threads. A GPU actor takes one GPU (and a CPU to feed it);
    CPU actors share the cluster's CPUs, minus what one decoding task needs, so decoding is never starved."""
    if device.startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}, threads
    share = max(0.25, (cluster_cpus - DECODE_CPUS) / actors)
    threads = threads or max(1, math.floor(cluster_cpus / actors))
    return {"num_cpus": min(float(threads), share)}, threads


def quiet_ray(verbose: bool) -> None:
    """Ray's own log lines (its driver's INFO lines, Ray Data's plan and progress lines) only when ``verbose``;
    errors always show."""
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)


def start_ray(address: str | None, num_cpus: int | None = None, verbose: bool = True) -> bool:
    """Connect to the cluster at ``address`` (``auto``, ``ray://host:10001`` ...), or start a local one on this
    machine's loopback with ``num_cpus`` (default: all cores), no dashboard and no usage reporting. Returns whether
    this call started Ray (and so should stop it). ``verbose``: the workers' output and Ray's INFO lines are shown
    (else only errors: :func:`quiet_ray`)."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # read when Ray starts: no usage report over the network
    logs = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    if address:
        ray.init(address=address, **logs)
        quiet_ray(verbose)
        return True
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                     **logs)
            quiet_ray(verbose)
            return True
        except Exception as e:  # noqa: BLE001  (Ray raises a bare Exception when its node does not come up)
            # Ray 2.60's raylet gives up when its agent process has not written its port file within seconds (seen
            # here: 18 s after launching it, under load 17 on 2 cores). A next try usually finds it faster.
            ray.shutdown()
            if "timed out during startup" not in str(e) or attempt == START_ATTEMPTS:
                raise
            print(f"local Ray node did not start in time (try {attempt} of {START_ATTEMPTS}); starting it again",
                  file=sys.stderr)
    return True


def predict_folder_ray(models: dict, images_dir: str | Path, out_dir: str | Path, actors: int = 0,
                       batch_size: int = 1, threads: int = 0, resume: bool = False, shard: tuple[int, int] = (0, 1),
                       address: str | None = None, num_cpus: int | None = None, files: list[str] | None = None,
                       progress: bool = True, on_batch=None, verbose: bool = False) -> RaySummary:
    """Write ``out_dir/predictions.jsonl`` as ``predict_folder`` does, on Ray.

    ``models``: keyword arguments of ``load_pipeline`` (each actor loads them; run folders must be readable on
    every node). ``actors``: model actors (0: one per GPU of the cluster when ``models["device"]`` is CUDA, else 1).
    ``threads``: torch threads per CPU actor (0: the cores split between the actors). ``address``: an existing
    cluster, else a local one with ``num_cpus``. ``on_batch`` sees each written batch as ImagePredictions read back
    from their lines (no decoded image kept: overlays need plain ``predict``). ``progress``: one progress bar, as
    plain ``predict`` shows; ``verbose``: Ray's own log lines and progress bars instead (:func:`start_ray`)."""
    root = Path(images_dir)
    files = input_files(root, files, shard)
    with output_lock(out_dir):
        return _predict_folder_ray(models, root, out_dir, files, actors, batch_size, threads, resume, address,
                                   num_cpus, progress, on_batch, verbose)


def _predict_folder_ray(models: dict, root: Path, out_dir, files: list[str], actors: int, batch_size: int,
                        threads: int, resume: bool, address: str | None, num_cpus: int | None, progress: bool,
                        on_batch, verbose: bool) -> RaySummary:
    jsonl, todo, skipped = prepare_output(out_dir, files, resume)
    summary = RaySummary(skipped=skipped, stage_seconds={k: 0.0 for k in STAGES})
    if not todo:
        return summary
    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(f"--engine ray needs Ray Data: pip install 'fashion2stage[ray]' ({e})") from None

    started = start_ray(address, num_cpus, verbose)
    from tqdm import tqdm  # noqa: PLC0415

    ctx = ray.data.DataContext.get_current()
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    try:
        device = str(models.get("device", "cpu"))
        if actors <= 0:
            actors = max(1, int(ray.cluster_resources().get("GPU", 0))) if device.startswith("cuda") else 1
        resources, threads = actor_resources(device, actors, threads, ray.cluster_resources().get("CPU", 1))
        summary.actors = actors
        ctx.execution_options.preserve_order = True  # lines in input order, and resume sees a prefix of the input
        ctx.enable_progress_bars = progress and verbose
        bar = tqdm(total=len(todo), unit="img", disable=not progress or verbose, file=sys.stderr, dynamic_ncols=True)
        start = time.perf_counter()
        # blocks are the unit of scheduling and retry: at least a few per actor, so that all of them get work
        blocks = min(len(todo), MAX_BLOCKS, max(4 * actors, math.ceil(len(todo) / DECODE_BATCH)))
        ds = ray.data.from_items([{"image": f} for f in todo], override_num_blocks=blocks)
        # batch_size=None: one call per block as made above (a batch size would bundle small blocks into one task)
        ds = ds.map_batches(decode_files, batch_size=None, batch_format="numpy", num_cpus=DECODE_CPUS,
                            fn_kwargs={"root": str(root.resolve())}, compute=ray.data.TaskPoolStrategy())
        with warnings.catch_warnings():  # Ray 2.60 has no named parameter for it yet, and warns about any other
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            # on this machine's own cluster a model actor that died (out of memory) would die again: no restarts,
            # and so none of the error-level line Ray's core logs when restartable actors get their arguments
            ds = ds.map_batches(PipelineActor, batch_size=batch_size, batch_format="numpy",
                                fn_constructor_kwargs={"models": _portable(models), "threads": threads},
                                compute=ray.data.ActorPoolStrategy(size=actors), **resources,
                                **({} if address else {"max_restarts": 0}))
        # one write per block, flushed: a killed run leaves whole lines (a torn one is dropped on resume)
        with appending(jsonl) as write:
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                write("".join(out["line"]))
                _count(summary, out)
                bar.update(len(out["line"]))
                if on_batch is not None:
                    on_batch(_read_back(out["line"]))
        bar.close()
        summary.seconds = time.perf_counter() - start
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()
    return summary


def predict_with_writers(models: dict, images_dir: str | Path, out_dir: str | Path, writers: dict,
                         **kwargs) -> tuple[RaySummary, list[Path]]:
    """``predict_folder_ray`` with the optional outputs of ``predict`` (``writers``: PredictionWriters' flags), as
    the CLI asks for them. Returns the summary and the files written besides predictions.jsonl."""
    from fashion2stage.app.outputs import PredictionWriters  # noqa: PLC0415
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

    if writers.get("overlays"):
        raise ValueError("--overlays draws on the decoded images, which stay on the Ray workers: "
                         "run predict without --engine ray for them")
    # the writers need the models' label sets: load them here (on the CPU) only when a writer is asked for
    if not any(writers.values()):
        return predict_folder_ray(models, images_dir, out_dir, **kwargs), []
    labels_from = load_pipeline(**{**models, "device": "cpu", "runtime": "torch"})
    writer = PredictionWriters.for_pipeline(Path(out_dir), labels_from, **writers)
    summary = predict_folder_ray(models, images_dir, out_dir, on_batch=writer, **kwargs)
    return summary, writer.close()


def _count(summary: RaySummary, out: dict[str, np.ndarray]) -> None:
    summary.images += len(out["line"])
    summary.garments += int(out["garments"].sum())
    summary.errors += [(str(rel), str(e)) for rel, e in zip(out["image"], out["error"]) if e]
    for stage in STAGES:
        summary.stage_seconds[stage] += float(out[f"{stage}_s"].sum())


def _read_back(lines) -> list[ImagePrediction]:
    return [ImagePrediction.from_json(line) for line in lines]


def _portable(models: dict) -> dict:
    """``models`` with absolute paths: actors may start in another working directory (or on another node)."""
    return {k: str(Path(v).resolve()) if k in ("detector", "attributes", "keypoints") and v else v
            for k, v in models.items()}
