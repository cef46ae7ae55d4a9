"""Build ``fashion2stage/default_model/``: the model bundle ``fashion2stage predict`` uses when given no run folder.

    python scripts/make_default_bundle.py --detector RUN --attributes RUN --keypoints RUN

From each run folder it copies what inference needs — ``config.json`` (in its canonical form, naming datasets
rather than this machine's folders: :func:`shipped_config`), ``labels.json``, ``metrics.json`` — and the
weights as float16 safetensors: half the size of float32, and loaded back into the float32 model by
``load_state_dict``. Training state (``last.pt``), caches and plots stay behind. Tensors float16 cannot hold
(|x| > 65504) stay float32. It then runs the pipeline from the run folders and from the bundle on the sample photos
(``examples/images``) and prints how far the float16 rounding moved boxes, probabilities and keypoints.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fashion2stage.io import write_json_atomic
from fashion2stage.jsonspec import to_json
from fashion2stage.runs import load_config
from fashion2stage.specs import DetectorSpec, spec_from_json

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("detector", "attributes", "keypoints")
KEEP = ("config.json", "labels.json", "metrics.json")
FP16_MAX = 65504.0


def half_weights(src: Path, dst: Path) -> tuple[int, int]:
    """float32 tensors of ``src`` as float16 in ``dst``; returns (bytes before, bytes after)."""
    state = load_file(str(src))
    out = {}
    for k, v in state.items():
        if v.dtype == torch.float32 and (v.numel() == 0 or float(v.abs().max()) <= FP16_MAX):
            v = v.half()
        out[k] = v.contiguous()
    save_file(out, str(dst), metadata={"source": "fashion2stage default bundle, float16 copy of float32 weights"})
    return src.stat().st_size, dst.stat().st_size


def relative_paths(value, root: Path):
    """``value`` (parsed JSON) with every absolute path string made relative to ``root``, POSIX separators."""
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, root) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(os.path.relpath(value, root)).as_posix()
    return value


# settings that only say where the training run lived on the machine that made it
MACHINE_KEYS = ("project", "name", "resume", "out", "cache", "classifier", "trunk", "threads", "workers")


def dataset_name(value: str) -> str:
    """A data path of a training record as a user can read it: the part from the dataset's folder on
    (``fashion-bench/ccp/annotations/instances_val.json``). The recipe's merged train + val files
    (scripts/train_default_model.sh: ``<work>/data/ccp/annotations/instances_trainval.json``) keep fashion-bench's
    layout, so they read the same way."""
    m = re.search(r"(?:^|/)fashion-bench/(.*)", value) or re.match(r"(?:.*/)?runs/(?:[^/]+/)?data/(?:trainval/)?(.*)",
                                                                    value)
    return f"fashion-bench/{m.group(1)}" if m else value


def public_record(value):
    """A training record (parsed JSON) with data paths as dataset names and without :data:`MACHINE_KEYS`."""
    if isinstance(value, dict):
        return {dataset_name(k): public_record(v) for k, v in value.items() if k not in MACHINE_KEYS}
    if isinstance(value, list):
        return [public_record(v) for v in value]
    return dataset_name(value) if isinstance(value, str) else value


def shipped_config(config: dict, file: Path) -> dict:
    """A run's config.json as the bundle ships it: the canonical form of its spec (fashion2stage/specs.py), the
    input normalisation written out, absolute paths made relative to the repository, and the training records
    (``train``, a detector's ``train_data`` / ``val_data``, a keypoint model's ``data``, the type heads' ``train``
    and ``sources``) naming datasets instead of this machine's folders."""
    spec = spec_from_json(relative_paths(config, ROOT), file)
    if isinstance(spec, DetectorSpec) and spec.model is not None:
        spec = replace(spec, model=replace(spec.model, normalisation=spec.model.norm))
    elif not isinstance(spec, DetectorSpec):
        spec = replace(spec, normalisation=spec.norm)
    out = to_json(spec)
    for key in ("train", "train_data", "val_data", "data"):
        if key in out:
            out[key] = public_record(out[key])
    for head in ("type_head", "item_type_head"):
        if out.get(head):
            out[head] = {**out[head], "train": public_record(out[head]["train"]),
                         "sources": public_record(out[head]["sources"])}
    return out


def copy_run(run: Path, kind: str, dst: Path) -> dict:
    if run.resolve() == dst.resolve():  # a stage of the bundle itself (a rebuild that changes another stage): kept
        return {"run": "kept as it is"}
    try:
        config = load_config(run, kind=kind)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    weights = config.get("weights", "weights.safetensors")
    if not weights.endswith(".safetensors"):
        raise SystemExit(f"{run}: weights {weights!r} are not safetensors; the bundle ships safetensors only")
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in KEEP:
        if (run / name).is_file():
            shutil.copyfile(run / name, dst / name)
    # training records this machine's paths; the shipped copy names datasets instead
    write_json_atomic(dst / "config.json", shipped_config(json.loads((run / "config.json").read_text()),
                                                          run / "config.json"))
    before, after = half_weights(run / weights, dst / weights)
    return {"run": run.name, "weights_mb_float32": round(before / 2**20, 1), "weights_mb_bundle": round(after / 2**20, 1)}


def compare(runs: dict[str, Path], bundle: Path, images: Path) -> dict:
    """Largest differences between the pipeline on the float32 run folders and on the float16 bundle."""
    from fashion2stage.app.reader import Reader  # noqa: PLC0415

    photos = sorted(images.glob("*.jpg"))
    a = Reader(runs["detector"], runs["attributes"], runs["keypoints"], use_default=False)(photos)
    b = Reader(bundle / "detector", bundle / "attributes", bundle / "keypoints", use_default=False)(photos)
    diff = {"garments": 0, "garments_differ": 0, "box_px": 0.0, "prob": 0.0, "keypoint_px": 0.0, "keypoints_flat": 0}
    for ra, rb in zip(a, b):
        diff["garments"] += len(ra.garments)
        if [g.type for g in ra.garments] != [g.type for g in rb.garments]:
            diff["garments_differ"] += 1
            continue
        for ga, gb in zip(ra.garments, rb.garments):
            diff["box_px"] = max(diff["box_px"], *(abs(x - y) for x, y in zip(ga.box, gb.box)))
            for k, v in ga.attributes.items():
                diff["prob"] = max(diff["prob"], *(abs(x - y) for x, y in zip(v.probs, gb.attributes[k].probs)))
            for k, (x, y, score) in ga.keypoints.items():
                xb, yb, _ = gb.keypoints[k]
                if score < 0.2:  # a flat heatmap's argmax may jump anywhere on a 1e-3 change: not a precision loss
                    diff["keypoints_flat"] += 1
                    continue
                diff["keypoint_px"] = max(diff["keypoint_px"], abs(x - xb), abs(y - yb))
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for stage in STAGES:
        ap.add_argument(f"--{stage}", type=Path, required=True, help=f"{stage} run folder")
    ap.add_argument("--out", type=Path, default=ROOT / "fashion2stage" / "default_model")
    ap.add_argument("--images", type=Path, default=ROOT / "examples" / "images", help="photos for the float16 check")
    args = ap.parse_args()
    for stage in STAGES:
        info = copy_run(getattr(args, stage), stage, args.out / stage)
        print(f"{stage}: {info}")
    runs = {stage: getattr(args, stage) for stage in STAGES}
    print(f"float32 runs vs float16 bundle on {args.images}: {compare(runs, args.out, args.images)}")


if __name__ == "__main__":
    main()
