"""Run folders: every train command writes one, and ``predict`` / ``evaluate`` read them back.

A run folder holds ``config.json`` (``{"kind": "detector" | "attributes" | "keypoints", ...}``: everything needed to
rebuild the model; its fields are the run spec of its kind, fashion2stage/specs.py, read with :func:`load_spec`),
``labels.json``, ``weights.safetensors`` (or a backend's own file), ``results.csv`` (one row per epoch),
``metrics.json``, plots, and ``last.pt`` (training state for ``--resume``, loaded with ``weights_only=True``).
"""
from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fashion2stage.errors import DataError
from fashion2stage.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from fashion2stage.jsonspec import to_json
from fashion2stage.labels import LabelSet
from fashion2stage.specs import SPECS, RunSpec, spec_from_json

RUN_KINDS = tuple(SPECS)


def new_run_dir(project: str | Path, name: str | None, kind: str) -> Path:
    """``project/name`` (``project/<kind>-<timestamp>`` when no name); refuses to reuse a non-empty folder."""
    name = name or f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run = Path(project) / name
    if run.exists() and any(run.iterdir()):
        raise FileExistsError(f"{run}: run folder exists and is not empty (use --resume to continue it, or another --name)")
    run.mkdir(parents=True, exist_ok=True)
    return run


def save_config(run: Path, config: RunSpec | dict) -> None:
    """Write ``config.json`` from a run spec, or from a dict read through one first: a file a trainer writes is
    always one that loads."""
    if isinstance(config, dict):
        if config.get("kind") not in RUN_KINDS:
            raise ValueError(f"config kind must be one of {RUN_KINDS}, got {config.get('kind')!r}")
        config = spec_from_json(config, run / "config.json")
    write_json_atomic(run / "config.json", to_json(config))


def load_config(run: str | Path, kind: str | None = None) -> dict:
    """Read ``config.json``; with ``kind``, a run folder of another kind is one clear error."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a fashion2stage run folder (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None
    if not isinstance(config, dict):
        raise DataError(path, f"expected a JSON object, found {type(config).__name__}")
    if kind is not None and config.get("kind") != kind:
        raise ValueError(f"{run}: is a {config.get('kind')!r} run, expected a {kind!r} run")
    return config


def load_spec(run: str | Path, kind: str) -> RunSpec:
    """The typed spec of a run folder's ``config.json`` (fashion2stage/specs.py): a run of another kind, an unknown
    key or a field of the wrong type or range is one DataError naming the file and the field."""
    return spec_from_json(load_config(run, kind=kind), Path(run) / "config.json")


def load_run(run: str | Path, kind: str) -> tuple[RunSpec, LabelSet]:
    """The spec and label set of a run folder, each file checked alone, then the two against each other (counts and
    names: ``spec.check_labels``)."""
    spec, labels = load_spec(run, kind), load_labels(run)
    spec.check_labels(labels, Path(run))
    return spec, labels


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
    """Load safetensors weights into ``model``. A missing, truncated or corrupt file, or tensors that do not fit the
    model its config.json describes, is one :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file not found (training not finished?)")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as e:
        raise DataError(path, f"not a readable safetensors file (truncated or corrupt?): {one_line(e)}") from None
    problem = _misfit(state, model.state_dict())
    if problem:
        raise DataError(path, f"weights do not fit the model config.json describes: {problem}")
    model.load_state_dict(state)
    return model


def _misfit(state: dict, expected: dict) -> str | None:
    """What keeps ``state`` from loading into a model whose state dict is ``expected``, in one line; None if it fits."""
    wrong = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    parts = ([f"{len(wrong)} tensor(s) of another shape ({wrong[0]})"] if wrong else []) + \
            ([f"{len(missing)} missing ({missing[0]}, ...)"] if missing else []) + \
            ([f"{len(unexpected)} unexpected ({unexpected[0]}, ...)"] if unexpected else [])
    return "; ".join(parts) or None


def one_line(err: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def config_errors(run: str | Path) -> Iterator[None]:
    """Rebuilding a model from a run folder: a config.json that lacks a field or holds one of the wrong type or
    value becomes one DataError naming that file, instead of a KeyError or TypeError from deep inside."""
    try:
        yield
    except DataError:
        raise
    except KeyError as e:
        raise DataError(Path(run) / "config.json", f"lacks the field {e}") from None
    except (TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise DataError(Path(run) / "config.json", f"does not describe a model this version can build: "
                                                   f"{one_line(e)}") from None


def save_checkpoint(path: Path, state: dict) -> None:
    """Training state (model, optimizer, scheduler state dicts, epoch, best metric) for resuming; atomic."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Only tensors and plain containers: never unpickles arbitrary objects. A truncated or foreign file (a run
    killed while the checkpoint was copied by hand, say) is a DataError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001  (torch.load raises RuntimeError, pickle.UnpicklingError, EOFError, ...)
        raise DataError(path, f"not a readable training checkpoint (truncated or corrupt?): {one_line(e)}") from None


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
