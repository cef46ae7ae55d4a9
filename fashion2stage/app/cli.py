"""The ``fashion2stage`` command line. It only parses arguments and calls the library; nothing else lives here."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fashion2stage.app import train_commands
from fashion2stage.app.cli_common import check_out_folder, fail, photo_kind_option, set_threads

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Two-stage garment reading: detect garments, then read attributes and landmarks from padded crops.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            typer.echo(f"fashion2stage {version('fashion2stage')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("fashion2stage (not installed: no version recorded)")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    pass  # the options of the command line itself (the app's help is Typer's help= above)


# the training commands live in train_commands.py; registered first, so that --help lists them first
for _name, _command, _summary in (
        ("detect-train", train_commands.detect_train, "Train a garment detector (Faster R-CNN or YOLO)."),
        ("detect-val", train_commands.detect_val, "COCO mAP of a detector run on a labelled set."),
        ("classify-train", train_commands.classify_train, "Train the attribute heads on padded crops."),
        ("keypoints-train", train_commands.keypoints_train, "Train the heatmap keypoint model."),
        ("type-head-train", train_commands.type_head_train, "Fit the garment check of an attribute run."),
        ("photo-kind-train", train_commands.photo_kind_train, "Fit the photo-kind head of an attribute run.")):
    app.command(_name, short_help=_summary)(_command)


@app.command("predict", short_help="Read the garments in photos: predictions.jsonl.")
def predict(
    source: Optional[str] = typer.Argument(None, metavar="SOURCE", show_default=False,
                                           help="An image, folder, glob or .txt list of paths."),
    images: Optional[str] = typer.Option(None, "--images", help="The same as SOURCE (older spelling)."),
    out: Path = typer.Option(Path("out"), "--out", help="Folder for predictions.jsonl and the rest."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run (default: shipped model)."),
    classifier: Optional[Path] = typer.Option(None, help="classify-train run (default: shipped)."),
    keypoints: Optional[Path] = typer.Option(None, help="keypoints-train run (default: shipped)."),
    no_default: bool = typer.Option(False, "--no-default", help="Use only the run folders given."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help="auto, onnx or torch (docs/runtime.md)."),
    batch_size: int = typer.Option(0, min=0, help="Images per batch (0: 1 for torch CPU, else 8)."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: the runtime's default)."),
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="Detector score threshold."),
    flip_tta: bool = typer.Option(False, "--flip-tta", help="Average attributes over a horizontal flip."),
    keypoint_flip: bool = typer.Option(False, "--keypoint-flip", help="Average landmarks over a horizontal flip."),
    single_item: Optional[bool] = photo_kind_option(),
    detector_size: int = typer.Option(0, min=0, help="Faster R-CNN photo side (0: as validated, 416)."),
    proposals: int = typer.Option(0, min=0, help="Faster R-CNN proposals per photo (0: 100)."),
    resume: bool = typer.Option(False, "--resume", help="Skip the images already in predictions.jsonl."),
    shard: str = typer.Option("0/1", help="i/n: every n-th image from the i-th."),
    coco: bool = typer.Option(False, "--coco", help="Also write detections_coco.json (COCO results)."),
    fashionai_csv: bool = typer.Option(False, "--fashionai-csv", help="Also write FashionAI's attribute CSV."),
    keypoint_csv: bool = typer.Option(False, "--keypoint-csv", help="Also write FashionAI's keypoint CSV."),
    overlays: bool = typer.Option(False, "--overlays", help="Also draw the predictions into out/overlays/."),
    engine: str = typer.Option("local", help="local, or ray (Ray Data on a cluster)."),
    ray_address: Optional[str] = typer.Option(None, help="--engine ray: a cluster (auto, ray://h:10001)."),
    actors: int = typer.Option(0, min=0, help="--engine ray: model actors (0: 1 per GPU)."),
    verbose: bool = typer.Option(False, "--verbose", help="--engine ray: show Ray's own log lines too."),
) -> None:
    """Detect garments in photos and read their attributes and landmarks (OUT/predictions.jsonl)."""
    if engine not in ("local", "ray"):
        fail(f"--engine {engine!r}: expected local or ray")
    if (source is None) == (images is None):
        fail("give the photos once: predict SOURCE (an image, a folder, a glob or a .txt list), or --images SOURCE")
    from fashion2stage.app.runtime import check_device  # noqa: PLC0415
    from fashion2stage.app.sources import resolve_source  # noqa: PLC0415

    try:
        check_device(device)
        root, files = resolve_source(source if source is not None else images)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    check_out_folder(out)
    try:
        i, n = (int(v) for v in shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        fail(f"--shard {shard!r}: expected i/n with 0 <= i < n")
    from fashion2stage.app.outputs import PredictionWriters  # noqa: PLC0415
    from fashion2stage.app.pipeline import default_batch_size  # noqa: PLC0415

    speed = dict(keypoint_flip=keypoint_flip, detector_size=detector_size or None, proposals=proposals or None,
                 single_item=single_item)
    if engine == "ray":  # fashion2stage/app/ray_predict.py; the models load in the Ray actors, not here
        from fashion2stage.app.ray_predict import predict_with_writers  # noqa: PLC0415

        models = dict(detector=detector, attributes=classifier, keypoints=keypoints, device=device, conf=conf,
                      use_default=not no_default, runtime=runtime, threads=threads, flip_tta=flip_tta, **speed)
        writers = dict(coco=coco, fashionai_attributes=fashionai_csv, fashionai_keypoints=keypoint_csv, overlays=overlays)
        summary = _predict_folder(None, root, out, batch_size or default_batch_size(runtime, device), resume,
                                  (i, n), files=files,
                                  run=lambda **kw: predict_with_writers(models, root, out, writers, actors=actors,
                                                                        threads=threads, address=ray_address,
                                                                        verbose=verbose, **kw))
    else:
        pipe = _load_pipeline(detector, classifier, keypoints, device=device, use_default=not no_default,
                              runtime=runtime, threads=threads, conf=conf, flip_tta=flip_tta, **speed)
        writers = PredictionWriters.for_pipeline(out, pipe, coco=coco, fashionai_attributes=fashionai_csv,
                                                 fashionai_keypoints=keypoint_csv, overlays=overlays)
        summary = _predict_folder(pipe, root, out, batch_size=batch_size or default_batch_size(runtime, device),
                                  resume=resume, shard=(i, n), writers=writers, files=files)
    if summary.images and len(summary.errors) == summary.images:
        fail(f"none of the {summary.images} photo(s) could be read (see 'error' lines in {out / 'predictions.jsonl'})")


def _load_pipeline(detector, classifier, keypoints, device: str, use_default: bool = True, runtime: str = "auto",
                   threads: int = 0, conf: float = 0.25, flip_tta: bool = False, **speed):
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

    set_threads(threads)
    try:
        return load_pipeline(detector, classifier, keypoints, device=device, use_default=use_default,
                             runtime=runtime, threads=threads, conf=conf, flip_tta=flip_tta, **speed)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


def _predict_folder(pipe, images: Path, out: Path, batch_size: int, resume: bool = False,
                    shard: tuple[int, int] = (0, 1), writers=None, files: list[str] | None = None, run=None) -> None:
    """Run ``predict_folder`` and tell the user what happened (unreadable files, speed, files written).
    ``run(batch_size=, resume=, shard=, files=) -> (summary, files written)`` replaces it (``--engine ray``)."""
    from fashion2stage.app.predict import predict_folder  # noqa: PLC0415
    from fashion2stage.errors import DataError  # noqa: PLC0415

    try:
        if run is not None:
            summary, written = run(batch_size=batch_size, resume=resume, shard=shard, files=files)
        else:
            summary = predict_folder(pipe, images, out, batch_size=batch_size, resume=resume, shard=shard,
                                     on_batch=writers, files=files)
            written = writers.close() if writers is not None else []
    except (OSError, DataError) as e:  # the folder cannot be listed, the output cannot be written or is locked, or
        fail(str(e))                   # --resume found a line in predictions.jsonl that is not a predictions line
    except (ImportError, ValueError) as e:  # --engine ray: Ray is not installed, or an output it cannot write
        if run is None:
            raise
        fail(str(e))
    for rel, problem in summary.errors[:20]:
        typer.echo(f"skipped {rel}: {problem}", err=True)
    if len(summary.errors) > 20:
        typer.echo(f"... and {len(summary.errors) - 20} more unreadable files (see 'error' lines in predictions.jsonl)", err=True)
    typer.echo(f"{summary.line()} -> {out / 'predictions.jsonl'}" + "".join(f", {p}" for p in written))
    return summary


@app.command("evaluate", short_help="Score predictions against labelled data.")
def evaluate(
    predictions: Optional[Path] = typer.Option(None, help="predictions.jsonl (or predict --images)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder to predict its labelled photos."),
    out: Path = typer.Option(Path("out"), "--out", help="Where predictions.jsonl and evaluation.json go."),
    boxes: Optional[Path] = typer.Option(None, help="COCO detection json: box mAP, attributes."),
    attribute_labels: Optional[Path] = typer.Option(None, help="FashionAI label.csv of image-level attributes."),
    schema: Optional[Path] = typer.Option(None, help="attributes.json of --attribute-labels."),
    keypoint_labels: Optional[Path] = typer.Option(None, help="COCO keypoints JSON: NE and PCK, end to end."),
    class_folders: Optional[Path] = typer.Option(None, help="Class folders: top-type accuracy, confusion."),
    single_item: Optional[bool] = photo_kind_option(),
    tags: Optional[Path] = typer.Option(None, help="Tag CSV: tag precision, recall, F1 per type."),
    classes: Optional[Path] = typer.Option(None, help="--class-folders/--tags mapping: name -> type."),
    type_conf: float = typer.Option(0.25, min=0.0, max=1.0, help="--class-folders: garment found from this score."),
    tag_conf: float = typer.Option(0.5, min=0.0, max=1.0, help="--tags: a type is shown from this score."),
    images_root: Optional[Path] = typer.Option(None, help="Folder the label files' paths start from."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run (default: shipped model)."),
    classifier: Optional[Path] = typer.Option(None, help="classify-train run (default: shipped)."),
    keypoints: Optional[Path] = typer.Option(None, help="keypoints-train run (default: shipped)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(8, min=1, help="Images per batch when predicting here."),
    conf: float = typer.Option(0.05, min=0.0, max=1.0, help="Detector threshold when predicting here."),
) -> None:
    """Score predictions against labelled data: detection mAP, attribute accuracy / AP, keypoint NE and PCK."""
    from fashion2stage.app.evaluate import (evaluate_predictions, plot_type_confusion, read_predictions,  # noqa: PLC0415
                                            report_lines)
    from fashion2stage.errors import DataError  # noqa: PLC0415
    from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints  # noqa: PLC0415
    from fashion2stage.formats.fashionai import read_attribute_csv  # noqa: PLC0415
    from fashion2stage.formats.folders import read_class_folders  # noqa: PLC0415
    from fashion2stage.formats.tags import read_tags  # noqa: PLC0415
    from fashion2stage.io import write_json_atomic  # noqa: PLC0415

    if not (boxes or attribute_labels or keypoint_labels or class_folders or tags):
        fail("nothing to evaluate against: give --boxes, --attribute-labels, --keypoint-labels, --class-folders or "
             "--tags")
    if (class_folders is not None or tags is not None) and not classes:
        fail(f"--{'class-folders' if class_folders is not None else 'tags'} needs --classes MAPPING (what each "
             f"{'class folder' if class_folders is not None else 'tag'} means)")
    if class_folders is not None and images is None and predictions is None:
        images = class_folders
    if tags is not None and images is None and predictions is None:
        images = tags.parent  # a tag CSV's image paths are relative to its folder
    if predictions is None and images is None:
        fail("give --predictions FILE, or --images DIR to predict first")
    try:
        gt_boxes = read_coco_detection(boxes, images_root) if boxes else None
        gt_attributes = read_attribute_csv(attribute_labels, images_root, schema=schema) if attribute_labels else None
        gt_keypoints = read_coco_keypoints(keypoint_labels, images_root) if keypoint_labels else None
        gt_types = read_class_folders(class_folders, classes) if class_folders else None
        gt_tags = read_tags(tags, classes, image_root=images_root) if tags else None
    except (DataError, FileNotFoundError) as e:
        fail(str(e))
    if predictions is None:
        # only the labelled images, by the paths the label files give (relative to --images, as predictions are)
        labelled = sorted({r.file for gt in (gt_boxes, gt_attributes, gt_keypoints, gt_types, gt_tags) if gt
                           for r in gt.records})
        pipe = _load_pipeline(detector, classifier, keypoints, device=device, conf=conf, single_item=single_item)
        _predict_folder(pipe, images, out, batch_size=batch_size, files=labelled)
        predictions = out / "predictions.jsonl"
    try:
        report = evaluate_predictions(read_predictions(predictions), gt_boxes, gt_attributes, gt_keypoints,
                                      gt_types, type_conf, gt_tags, tag_conf)
        if "types" in report:
            plot_type_confusion(report["types"], Path(predictions).parent / "confusion_types.png")
    except (DataError, FileNotFoundError) as e:
        fail(str(e))
    path = Path(predictions).parent / "evaluation.json"
    write_json_atomic(path, report)
    for line in report_lines(report):
        typer.echo(line)
    typer.echo(f"-> {path}")


@app.command("export", short_help="Export run folders' models to ONNX.")
def export(
    runs: list[Path] = typer.Argument(..., help="Run folders to export (attributes, keypoints, detector)."),
    format: str = typer.Option("onnx", "--format", help="Only onnx for now."),
) -> None:
    """Export run folders' models to ONNX (written as model.onnx inside each run folder) for serving."""
    from fashion2stage.runs import load_config  # noqa: PLC0415

    if format != "onnx":
        fail(f"--format {format!r}: only onnx is supported")
    for run in runs:
        try:
            kind = load_config(run)["kind"]
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
        if kind == "attributes":
            from classifiers.export import export_attribute_run as export_run  # noqa: PLC0415
        elif kind == "keypoints":
            from classifiers.export import export_keypoint_run as export_run  # noqa: PLC0415
        else:
            from detectors.export import export_detector_onnx as export_run  # noqa: PLC0415
        try:
            typer.echo(f"{run}: {kind} -> {export_run(run)}")
        except (FileNotFoundError, ValueError) as e:  # a broken model file: DataError naming it
            fail(str(e))


# the service's flags live beside it (fashion2stage/app/serve/command.py); importing them loads no web framework
from fashion2stage.app.serve.command import serve as _serve  # noqa: E402

app.command("serve", short_help="Serve the pipeline over HTTP, with a web page.")(_serve)

if __name__ == "__main__":
    app()
