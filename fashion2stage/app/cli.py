"""The ``fashion2stage`` command line. It only parses arguments and calls the library; nothing else lives here."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Two-stage garment reading: detect garments, then read attributes and landmarks from padded crops.")


def _fail(message: str) -> None:
    """One clear line on stderr, exit code 1."""
    typer.echo(f"fashion2stage: {message}", err=True)
    raise typer.Exit(code=1)


def _set_threads(threads: int | None) -> None:
    """torch's CPU threads when the user gave ``--threads`` (torch is imported only then)."""
    if threads:
        import torch  # noqa: PLC0415
        torch.set_num_threads(threads)


@app.command("detect-train")
def detect_train(
    data: list[str] = typer.Option(..., help="Training source: COCO detection or keypoints json, a dataset YAML, or "
                                   "a class folder (<dir>/<class>/<image>, needs --classes). Repeat to train on "
                                   "several at once, each drawn with an equal share."),
    val: list[str] = typer.Option([], help="Validation set(s), same kinds; the first chooses the best epoch "
                                  "(default: the YAML's val entry)."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: <x>/images beside <x>/annotations/)."),
    classes: Optional[Path] = typer.Option(None, help="Class-folder mapping file: class -> garment type or none."),
    pseudo_boxes: str = typer.Option("foreground", help="Boxes for class-folder photos: foreground (class-agnostic "
                                     "box from colour) or detector:RUN (that detector's top box, type forced)."),
    epoch_size: Optional[int] = typer.Option(None, help="Samples per epoch over all sources (default: their total)."),
    detector: str = typer.Option("faster-rcnn", help="faster-rcnn (EfficientNet-Lite0 FPN, offline) or yolo."),
    weights: Optional[str] = typer.Option(None, help="yolo: an ultralytics .pt checkpoint (default: yolo11n.yaml "
                                          "from scratch); faster-rcnn: a detect-train run folder to fine-tune, "
                                          "'none' (random init) or 'coco' (torchvision, needs the internet)."),
    epochs: int = typer.Option(12),
    batch: int = typer.Option(4),
    image_size: int = typer.Option(416, help="faster-rcnn: shorter image side at inference; yolo: imgsz."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: the backend's)."),
    project: Path = typer.Option(Path("runs/detect"), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: detector-<timestamp>)."),
    resume: bool = typer.Option(False, help="Continue project/name from its last checkpoint."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    trainable_stages: int = typer.Option(4, help="faster-rcnn: backbone blocks (of 7, from the top) to train."),
    device: str = typer.Option("cpu", help="faster-rcnn: cpu or cuda (cuda:LOCAL_RANK under torchrun); yolo: "
                               "ultralytics' --device, e.g. 0,1 (it runs its own DDP)."),
) -> None:
    """Train a garment detector (YOLO or Faster R-CNN) on boxes from one or several sources; writes a run folder."""
    from detectors.train import DetectTrainConfig, train_detector

    cfg = DetectTrainConfig(data=list(data), val=list(val), images=str(images) if images else None,
                            classes=str(classes) if classes else None, pseudo_boxes=pseudo_boxes,
                            epoch_size=epoch_size, detector=detector, weights=weights, epochs=epochs, batch=batch,
                            image_size=image_size, lr=lr, trainable_stages=trainable_stages, device=device,
                            project=str(project), name=name, resume=resume, threads=threads)
    try:
        run = train_detector(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as e:  # a DataError is a ValueError
        _fail(str(e))
    typer.echo(f"run folder: {run}")


@app.command("detect-val")
def detect_val(
    run: Path = typer.Argument(..., help="A detect-train run folder."),
    data: Path = typer.Option(..., help="Labelled COCO detection json (or a dataset YAML: its val entry)."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: <x>/images beside <x>/annotations/)."),
    out: Optional[Path] = typer.Option(None, help="Where metrics.json etc. go (default: the run folder)."),
    batch: int = typer.Option(8),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Evaluate a detector run on a labelled set: COCO mAP@[.5:.95] / mAP@.5 per type, box errors."""
    from detectors.train import validate_run

    _set_threads(threads)
    m = validate_run(run, str(data), str(images) if images else None, out, batch)
    typer.echo(f"mAP@[.5:.95] {m['map']:.4f}  mAP@.5 {m['map50']:.4f}")
    for t, v in m["per_class"].items():
        typer.echo(f"  {t:10s} mAP {v['map']:.4f}  mAP@.5 {v['map50']:.4f}  ({v['n_gt']} boxes)")


@app.command("classify-train")
def classify_train(
    data: list[Path] = typer.Option(..., help="Training labels: COCO detection json (garment boxes + attributes), a "
                                    "class folder (with --classes), or "
                                    "FashionAI label.csv (image-level, no boxes). Repeat to train one model on several."),
    val: list[Path] = typer.Option(..., help="Validation labels, one per --data, same order."),
    schema: Optional[Path] = typer.Option(None, help="attributes.json {key: [values]} for label CSVs (default: the "
                                          "one beside the CSV, else FashionAI's)."),
    classes: Optional[Path] = typer.Option(None, help="Mapping file for class-folder --data/--val (class -> type, "
                                           "attribute values); their photos train on foreground boxes."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run: crops of boxless images come from its "
                                            "boxes (cached in the run folder); validation garments use its matched boxes."),
    box_errors: Optional[Path] = typer.Option(None, help="box_errors.json for the ground-truth box jitter (default: "
                                              "the --detector run's)."),
    jitter: Optional[str] = typer.Option(None, help="detector | default (shift 0.1, scale 0.25) | none "
                                         "(default: detector when box errors exist, else default)."),
    key_types: list[str] = typer.Option([], help="key=type1,type2: garment types that carry an attribute key."),
    crop: str = typer.Option("two-stage", help="two-stage (detector crops) or whole (image-level labels read the "
                             "whole image: the ablation)."),
    epochs: int = typer.Option(10),
    image_size: int = typer.Option(224, help="Square crop side, pixels."),
    padding: float = typer.Option(1.25, min=1.0, help="Crop side / box side (1.0: tight crop of the box)."),
    batch_size: int = typer.Option(32),
    backbone: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 (offline ImageNet weights) or a timm name."),
    pretrained: bool = typer.Option(True, help="Start from pretrained backbone weights."),
    lr: float = typer.Option(1e-3, help="Heads' learning rate; the backbone gets lr x --backbone-lr-mult."),
    backbone_lr_mult: float = typer.Option(0.1),
    schedule: str = typer.Option("cosine", help="cosine (with warm-up) or onecycle."),
    freeze_epochs: int = typer.Option(1, help="Epochs with a frozen backbone (heads only) first."),
    balance: str = typer.Option("none", help="none or weights (inverse-sqrt-frequency class weights per key)."),
    select: str = typer.Option("mAP", help="Validation metric choosing the best epoch: mAP or mean_accuracy."),
    flip_tta: bool = typer.Option(False, "--flip-tta", help="Validate on the mean of the crop and its mirror image."),
    project: Path = typer.Option(Path("runs/attributes"), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: attributes-<timestamp>)."),
    resume: bool = typer.Option(False, help="Continue --project/--name from its last.pt (--epochs may extend it)."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    device: str = typer.Option("cpu"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    seed: int = typer.Option(0),
) -> None:
    """Train the attribute heads (one backbone, one head per key) on padded, detector-jittered garment crops."""
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415
    from classifiers.train_attributes import AttributeTrainConfig, train  # noqa: PLC0415

    types = {}
    for item in key_types:
        key, sep, names = item.partition("=")
        if not sep or not key or not names:
            _fail(f"--key-types must be key=type1,type2, got {item!r}")
        types[key] = [t for t in names.split(",") if t]
    cfg = AttributeTrainConfig(
        data=[str(p) for p in data], val=[str(p) for p in val], schema=str(schema) if schema else None,
        classes=str(classes) if classes else None, detector=str(detector) if detector else None, box_errors=str(box_errors) if box_errors else None,
        jitter=jitter, key_types=types, crop=crop, epochs=epochs, image_size=image_size, padding=padding,
        batch_size=batch_size,
        backbone=backbone, pretrained=pretrained, lr=lr, backbone_lr_mult=backbone_lr_mult, schedule=schedule,
        freeze_epochs=freeze_epochs, balance=balance, select=select, flip_tta=flip_tta, workers=workers,
        device=device, threads=threads, seed=seed, project=str(project), name=name, resume=resume)
    if resume and not name:
        _fail("--resume needs --name (the run folder under --project to continue)")
    try:
        run = train(cfg)
    except (DataError, ImageReadError, ValueError, FileExistsError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(f"run folder: {run}")


@app.command("keypoints-train")
def keypoints_train(
    data: list[Path] = typer.Option(..., help="Training keypoints: COCO keypoints JSON, FashionAI keypoint CSV or "
                                    "DeepFashion2 annos folder. Repeat to train on several (same keypoint names), "
                                    "each drawn with an equal share."),
    val: Optional[Path] = typer.Option(None, help="Validation keypoints, same formats (best epoch by its NE)."),
    images: list[Path] = typer.Option([], help="Image root of each --data, in order (default: the format's usual "
                                      "place)."),
    val_images: Optional[Path] = typer.Option(None, help="Image root of --val."),
    box_errors: Optional[Path] = typer.Option(None, help="A detector's box_errors.json: jitter crops the way it errs."),
    jitter: str = typer.Option("default", help="Without --box-errors: 'default' (shift 0.1, scale 0.25) or 'none'."),
    epochs: int = typer.Option(60),
    image_size: str = typer.Option("192x256", help="Crop WIDTHxHEIGHT, multiples of 32 (heatmaps are 1/4 of it)."),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(1e-3),
    sigma: float = typer.Option(2.0, help="Gaussian sigma of the target heatmaps, heatmap pixels."),
    pretrained: bool = typer.Option(True, help="Start from the offline ImageNet EfficientNet-Lite0 weights."),
    flip_test: bool = typer.Option(True, help="Average predictions of the crop and its mirror image."),
    project: Path = typer.Option(Path("runs/keypoints")),
    name: Optional[str] = typer.Option(None),
    resume: bool = typer.Option(False, help="Continue the run folder --project/--name from its last.pt."),
    device: str = typer.Option("cpu"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    seed: int = typer.Option(0),
) -> None:
    """Train the heatmap keypoint model on padded, detector-jittered garment crops."""
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415
    from classifiers.train_keypoints import KeypointTrainConfig, train  # noqa: PLC0415

    try:
        width, height = (int(v) for v in image_size.lower().split("x"))
    except ValueError:
        typer.echo(f"fashion2stage: --image-size must be WIDTHxHEIGHT, got {image_size!r}", err=True)
        raise typer.Exit(code=2) from None
    paths = {k: str(v) if v else None for k, v in dict(val=val, val_images=val_images, box_errors=box_errors).items()}
    cfg = KeypointTrainConfig(data=[str(d) for d in data] if len(data) > 1 else str(data[0]),
                              images=[str(i) for i in images] if len(images) > 1 else str(images[0]) if images else None,
                              **paths, jitter=jitter, width=width, height=height, epochs=epochs,
                              batch_size=batch_size, lr=lr, sigma=sigma, pretrained=pretrained, flip_test=flip_test,
                              seed=seed, device=device, threads=threads, project=str(project), name=name, resume=resume)
    try:
        run = train(cfg)
        metrics = json.loads((run / "metrics.json").read_text())
    except (DataError, ImageReadError, ValueError, FileExistsError, FileNotFoundError) as e:
        typer.echo(f"fashion2stage: {e}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(str(run))
    for split in ("val_gt_boxes", "val_jittered_boxes"):
        if split in metrics:
            typer.echo(f"{split}: NE {metrics[split]['ne']:.2f}%  PCK@0.1 {metrics[split]['pck@0.1']:.3f}")


@app.command("predict")
def predict(
    images: Path = typer.Option(..., "--images", help="Folder of images (searched recursively)."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder: predictions.jsonl and the files asked for."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run folder (default: the shipped model)."),
    classifier: Optional[Path] = typer.Option(None, help="classify-train run folder (default: the shipped model)."),
    keypoints: Optional[Path] = typer.Option(None, help="keypoints-train run folder (default: the shipped model)."),
    no_default: bool = typer.Option(False, "--no-default", help="Use only the run folders given, not the shipped ones."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("torch", help="torch, or onnx (ONNX Runtime on the CPU; needs `fashion2stage export` first)."),
    batch_size: int = typer.Option(0, min=0, help="Images per batch; all garments of a batch go through the heads "
                                   "together (0: 1 for torch on the CPU, where batching measured slower; else 8)."),
    threads: int = typer.Option(0, min=0, help="CPU threads of torch and ONNX Runtime (0: their defaults)."),
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="Detector score threshold."),
    flip_tta: bool = typer.Option(False, "--flip-tta", help="Average attribute probabilities over a horizontal flip."),
    resume: bool = typer.Option(False, "--resume", help="Keep predictions.jsonl and skip the images already in it."),
    shard: str = typer.Option("0/1", help="i/n: process every n-th image starting at i (split a folder over machines)."),
    coco: bool = typer.Option(False, "--coco", help="Also write detections_coco.json (COCO results)."),
    fashionai_csv: bool = typer.Option(False, "--fashionai-csv", help="Also write the FashionAI attribute submission CSV."),
    keypoint_csv: bool = typer.Option(False, "--keypoint-csv", help="Also write the FashionAI keypoint CSV."),
    overlays: bool = typer.Option(False, "--overlays", help="Also draw boxes, attributes and landmarks into out/overlays/."),
    engine: str = typer.Option("local", help="local, or ray: decoding in Ray tasks, the models in a pool of actors."),
    ray_address: Optional[str] = typer.Option(None, help="--engine ray: a cluster (auto, ray://host:10001), not a local one."),
    actors: int = typer.Option(0, min=0, help="--engine ray: model actors (0: one per GPU with --device cuda, else 1)."),
) -> None:
    """Detect garments in every image of a folder and read their attributes and landmarks (predictions.jsonl)."""
    if engine not in ("local", "ray"):
        _fail(f"--engine {engine!r}: expected local or ray")
    try:
        i, n = (int(v) for v in shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        _fail(f"--shard {shard!r}: expected i/n with 0 <= i < n")
    from fashion2stage.app.outputs import PredictionWriters  # noqa: PLC0415
    from fashion2stage.app.pipeline import default_batch_size  # noqa: PLC0415

    if engine == "ray":  # fashion2stage/app/ray_predict.py; the models load in the Ray actors, not here
        from fashion2stage.app.ray_predict import predict_with_writers  # noqa: PLC0415

        models = dict(detector=detector, attributes=classifier, keypoints=keypoints, device=device, conf=conf,
                      use_default=not no_default, runtime=runtime, threads=threads, flip_tta=flip_tta)
        writers = dict(coco=coco, fashionai_attributes=fashionai_csv, fashionai_keypoints=keypoint_csv, overlays=overlays)
        return _predict_folder(None, images, out, batch_size or default_batch_size(runtime, device), resume, (i, n),
                               run=lambda **kw: predict_with_writers(models, images, out, writers, actors=actors,
                                                                     threads=threads, address=ray_address, **kw))
    pipe = _load_pipeline(detector, classifier, keypoints, device=device, use_default=not no_default,
                          runtime=runtime, threads=threads, conf=conf, flip_tta=flip_tta)
    writers = PredictionWriters.for_pipeline(out, pipe, coco=coco, fashionai_attributes=fashionai_csv,
                                             fashionai_keypoints=keypoint_csv, overlays=overlays)
    _predict_folder(pipe, images, out, batch_size=batch_size or default_batch_size(runtime, device), resume=resume,
                    shard=(i, n), writers=writers)


def _load_pipeline(detector, classifier, keypoints, device: str, use_default: bool = True, runtime: str = "torch",
                   threads: int = 0, conf: float = 0.25, flip_tta: bool = False):
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

    _set_threads(threads)
    try:
        return load_pipeline(detector, classifier, keypoints, device=device, use_default=use_default,
                             runtime=runtime, threads=threads, conf=conf, flip_tta=flip_tta)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))


def _predict_folder(pipe, images: Path, out: Path, batch_size: int, resume: bool = False,
                    shard: tuple[int, int] = (0, 1), writers=None, files: list[str] | None = None, run=None) -> None:
    """Run ``predict_folder`` and tell the user what happened (unreadable files, speed, files written).
    ``run(batch_size=, resume=, shard=, files=) -> (summary, files written)`` replaces it (``--engine ray``)."""
    from fashion2stage.app.predict import predict_folder  # noqa: PLC0415

    try:
        if run is not None:
            summary, written = run(batch_size=batch_size, resume=resume, shard=shard, files=files)
        else:
            summary = predict_folder(pipe, images, out, batch_size=batch_size, resume=resume, shard=shard,
                                     on_batch=writers, files=files)
            written = writers.close() if writers is not None else []
    except OSError as e:  # the folder cannot be listed, or the output cannot be written
        _fail(str(e))
    except (ImportError, ValueError) as e:  # --engine ray: Ray is not installed, or an output it cannot write
        if run is None:
            raise
        _fail(str(e))
    for rel, problem in summary.errors[:20]:
        typer.echo(f"skipped {rel}: {problem}", err=True)
    if len(summary.errors) > 20:
        typer.echo(f"... and {len(summary.errors) - 20} more unreadable files (see 'error' lines in predictions.jsonl)", err=True)
    typer.echo(f"{summary.line()} -> {out / 'predictions.jsonl'}" + "".join(f", {p}" for p in written))


@app.command("evaluate")
def evaluate(
    predictions: Optional[Path] = typer.Option(None, help="predictions.jsonl to score (else --images is predicted first)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder to predict when no --predictions is given: "
                                          "the labelled images in it (paths as the label files give them)."),
    out: Path = typer.Option(Path("out"), "--out", help="Where predictions.jsonl and evaluation.json go."),
    boxes: Optional[Path] = typer.Option(None, help="COCO detection JSON: box mAP, and garment attributes it labels."),
    attribute_labels: Optional[Path] = typer.Option(None, help="FashionAI label.csv of image-level attributes."),
    schema: Optional[Path] = typer.Option(None, help="Value names for --attribute-labels (default: attributes.json beside it)."),
    keypoint_labels: Optional[Path] = typer.Option(None, help="COCO keypoints JSON: NE and PCK, end to end "
                                                   "(points of the detected garment matched to each labelled one)."),
    class_folders: Optional[Path] = typer.Option(None, help="Class-folder set (<dir>/<class>/<image>, one item per "
                                                 "photo): top-type accuracy, confusion matrix, no-garment rate."),
    classes: Optional[Path] = typer.Option(None, help="Mapping file for --class-folders: class -> type or none."),
    type_conf: float = typer.Option(0.25, min=0.0, max=1.0, help="--class-folders: a garment counts as found "
                                    "from this score (predict's default threshold)."),
    images_root: Optional[Path] = typer.Option(None, help="Image folder the label files' paths are relative to."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run folder (default: the shipped model)."),
    classifier: Optional[Path] = typer.Option(None, help="classify-train run folder (default: the shipped model)."),
    keypoints: Optional[Path] = typer.Option(None, help="keypoints-train run folder (default: the shipped model)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(8, min=1),
    conf: float = typer.Option(0.05, min=0.0, max=1.0,
                               help="Detector threshold when predicting here (low: mAP integrates over all scores)."),
) -> None:
    """Score predictions against labelled data: detection mAP, attribute accuracy / AP, keypoint NE and PCK."""
    from fashion2stage.app.evaluate import (evaluate_predictions, plot_type_confusion, read_predictions,  # noqa: PLC0415
                                            report_lines)
    from fashion2stage.errors import DataError  # noqa: PLC0415
    from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints  # noqa: PLC0415
    from fashion2stage.formats.fashionai import read_attribute_csv  # noqa: PLC0415
    from fashion2stage.formats.folders import read_class_folders  # noqa: PLC0415
    from fashion2stage.io import write_json_atomic  # noqa: PLC0415

    if not (boxes or attribute_labels or keypoint_labels or class_folders):
        _fail("nothing to evaluate against: give --boxes, --attribute-labels, --keypoint-labels or --class-folders")
    if class_folders is not None and not classes:
        _fail("--class-folders needs --classes MAPPING (what each class folder means)")
    if class_folders is not None and images is None and predictions is None:
        images = class_folders
    if predictions is None and images is None:
        _fail("give --predictions FILE, or --images DIR to predict first")
    try:
        gt_boxes = read_coco_detection(boxes, images_root) if boxes else None
        gt_attributes = read_attribute_csv(attribute_labels, images_root, schema=schema) if attribute_labels else None
        gt_keypoints = read_coco_keypoints(keypoint_labels, images_root) if keypoint_labels else None
        gt_types = read_class_folders(class_folders, classes) if class_folders else None
    except (DataError, FileNotFoundError) as e:
        _fail(str(e))
    if predictions is None:
        # only the labelled images, by the paths the label files give (relative to --images, as predictions are)
        labelled = sorted({r.file for gt in (gt_boxes, gt_attributes, gt_keypoints, gt_types) if gt
                           for r in gt.records})
        pipe = _load_pipeline(detector, classifier, keypoints, device=device, conf=conf)
        _predict_folder(pipe, images, out, batch_size=batch_size, files=labelled)
        predictions = out / "predictions.jsonl"
    try:
        report = evaluate_predictions(read_predictions(predictions), gt_boxes, gt_attributes, gt_keypoints,
                                      gt_types, type_conf)
        if "types" in report:
            plot_type_confusion(report["types"], Path(predictions).parent / "confusion_types.png")
    except (DataError, FileNotFoundError) as e:
        _fail(str(e))
    path = Path(predictions).parent / "evaluation.json"
    write_json_atomic(path, report)
    for line in report_lines(report):
        typer.echo(line)
    typer.echo(f"-> {path}")


@app.command("export")
def export(
    runs: list[Path] = typer.Argument(..., help="Run folders to export (attributes, keypoints, detector)."),
    format: str = typer.Option("onnx", "--format", help="Only onnx for now."),
) -> None:
    """Export run folders' models to ONNX (written as model.onnx inside each run folder) for serving."""
    from fashion2stage.runs import load_config  # noqa: PLC0415

    if format != "onnx":
        _fail(f"--format {format!r}: only onnx is supported")
    for run in runs:
        try:
            kind = load_config(run)["kind"]
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e))
        if kind == "attributes":
            from classifiers.onnx_runtime import export_attribute_run as export_run  # noqa: PLC0415
        elif kind == "keypoints":
            from classifiers.onnx_runtime import export_keypoint_run as export_run  # noqa: PLC0415
        else:
            from detectors.export import export_detector_onnx as export_run  # noqa: PLC0415
        try:
            typer.echo(f"{run}: {kind} -> {export_run(run)}")
        except (FileNotFoundError, ValueError) as e:  # a broken model file: DataError naming it
            _fail(str(e))


# the service's flags live beside it (fashion2stage/app/serve/command.py); importing them loads no web framework
from fashion2stage.app.serve.command import serve as _serve  # noqa: E402

app.command("serve")(_serve)

if __name__ == "__main__":
    app()
