"""What every command of the ``fashion2stage`` command line shares: how it fails, and how it sets threads."""
from __future__ import annotations

import typer


def fail(message: str) -> None:
    """One clear line on stderr, exit code 1."""
    typer.echo(f"fashion2stage: {message}", err=True)
    raise typer.Exit(code=1)


def set_threads(threads: int | None) -> None:
    """torch's CPU threads when the user gave ``--threads`` (torch is imported only then)."""
    if threads:
        import torch  # noqa: PLC0415
        torch.set_num_threads(threads)

