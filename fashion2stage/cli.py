"""The ``fashion2stage`` command line. It only parses arguments and calls the library; nothing else lives here."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Two-stage garment reading: detect garments, then read attributes and landmarks from padded crops.")


def _not_built(stage: str) -> None:
    typer.echo(f"fashion2stage: {stage} is not built yet in this version.", err=True)
    raise typer.Exit(code=2)


@app.command("detect-train")
def detect_train() -> None:
    """Train a garment detector (YOLO or Faster R-CNN) on COCO boxes; writes a self-describing run folder."""
    _not_built("detect-train")


@app.command("classify-train")
def classify_train() -> None:
    """Train the attribute heads (one backbone, one head per key) on padded, detector-jittered garment crops."""
    _not_built("classify-train")


@app.command("keypoints-train")
def keypoints_train() -> None:
    """Train the heatmap keypoint model on padded, detector-jittered garment crops."""
    _not_built("keypoints-train")


@app.command("predict")
def predict() -> None:
    """Detect garments in every image of a folder and read their attributes and landmarks (predictions.jsonl)."""
    _not_built("predict")


@app.command("evaluate")
def evaluate() -> None:
    """Evaluate a run folder on a labelled set: detection mAP, attribute accuracy / AP, keypoint NE."""
    _not_built("evaluate")


@app.command("export")
def export() -> None:
    """Export a run folder's model to ONNX for serving."""
    _not_built("export")


if __name__ == "__main__":
    app()
