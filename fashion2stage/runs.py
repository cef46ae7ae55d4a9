"""Run folders: every train command writes one, and ``predict`` / ``evaluate`` read them back.

A run folder holds ``config.json`` (``{"kind": "detector" | "attributes" | "keypoints", ...}``: everything needed to
rebuild the model), ``labels.json``, ``weights.safetensors`` (or a backend's own file), ``results.csv`` (one row per
epoch), ``metrics.json``, plots, and ``last.pt`` (training state for ``--resume``, loaded with ``weights_only=True``).
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fashion2stage.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from fashion2stage.labels import LabelSet

RUN_KINDS = ("detector", "attributes", "keypoints")


def new_run_dir(project: str | Path, name: str | None, kind: str) -> Path:
    """``project/name`` (``project/<kind>-<timestamp>`` when no name); refuses to reuse a non-empty folder."""
    name = name or f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run = Path(project) / name
    if run.exists() and any(run.iterdir()):
        raise FileExistsError(f"{run}: run folder exists and is not empty (use --resume to continue it, or another --name)")
    run.mkdir(parents=True, exist_ok=True)
    return run


def save_config(run: Path, config: dict) -> None:
    if config.get("kind") not in RUN_KINDS:
        raise ValueError(f"config kind must be one of {RUN_KINDS}, got {config.get('kind')!r}")
    write_json_atomic(run / "config.json", config)


def load_config(run: str | Path, kind: str | None = None) -> dict:
    """Read ``config.json``; with ``kind``, a run folder of another kind is one clear error."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a fashion2stage run folder (no config.json)")
    config = json.loads(path.read_text())
    if kind is not None and config.get("kind") != kind:
        raise ValueError(f"{run}: is a {config.get('kind')!r} run, expected a {kind!r} run")
    return config


def save_labels(run: Path, labels: LabelSet) -> None:
    labels.save(run / "labels.json")


def load_labels(run: str | Path) -> LabelSet:
    return LabelSet.load(Path(run) / "labels.json")


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """Model weights as safetensors, written atomically (shared tensors are cloned: safetensors refuses aliases)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def load_weights(path: Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> torch.nn.Module:
    model.load_state_dict(load_file(str(path), device=str(device)))
    return model


def save_checkpoint(path: Path, state: dict) -> None:
    """Training state (model, optimizer, scheduler state dicts, epoch, best metric) for resuming; atomic."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Only tensors and plain containers: never unpickles arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def append_results(run: Path, row: dict) -> None:
    """Append one epoch's row to ``results.csv`` (header from the first row; rewritten whole, atomically)."""
    path = run / "results.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def truncate_results(run: Path, epochs_done: int) -> None:
    """On resume, drop rows of epochs after the checkpoint (they were written after it and will be redone)."""
    path = run / "results.csv"
    if not path.exists():
        return
    rows = [r for r in csv.DictReader(path.open()) if int(r.get("epoch", 0)) <= epochs_done]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path, out.getvalue())
