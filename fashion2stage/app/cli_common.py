"""What every command of the ``fashion2stage`` command line shares: how it fails, how it checks ``--out``, how it
sets threads, and the photo kind option of the commands that predict."""
from __future__ import annotations

import os
from pathlib import Path

import typer


def fail(message: str) -> None:
    """One clear line on stderr, exit code 1."""
    typer.echo(f"fashion2stage: {message}", err=True)
    raise typer.Exit(code=1)


def echo_main(message: str) -> None:
    """``message`` on stdout from the first process only: under ``torchrun`` every process runs the same command,
    and its summary should print once (``RANK`` 0, or no torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(message)


def check_out_folder(out: Path) -> None:
    """``--out`` must be a folder, or a path where one can be made: a file in its place is one line, exit 1."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                fail(f"--out {out}: {'it' if p == out else p} is a file, not a folder")
            return


def set_threads(threads: int | None) -> None:
    """torch's CPU threads when the user gave ``--threads`` (torch is imported only then)."""
    if threads:
        import torch  # noqa: PLC0415
        torch.set_num_threads(threads)



def photo_kind_option():
    """``--single-item/--multi-item`` of predict, evaluate and serve: None (neither given) lets the attribute
    model's photo-kind head judge each photo (fashion2stage/app/pipeline.py, ``judge``)."""
    return typer.Option(None, "--single-item/--multi-item", help="One item / several (default: judged).")
