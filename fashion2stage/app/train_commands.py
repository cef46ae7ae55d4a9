"""The training commands of the ``fashion2stage`` command line (``detect-train``, ``detect-val``,
``classify-train``, ``keypoints-train``): they parse flags and call the trainers; cli.py registers them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fashion2stage.app.cli_common import fail, set_threads
from fashion2stage.weak_labels import DEFAULT_CONF


def detect_train(
    data: list[str] = typer.Option(..., help="Training source: COCO detection or keypoints json, a dataset YAML, "
                                   "a class folder (<dir>/<class>/<image>, needs --classes) or a tag CSV "
                                   "(image,tags; needs --classes and --teacher). Repeat to train on several at "
                                   "once, each drawn with an equal share."),
    val: list[str] = typer.Option([], help="Validation set(s), same kinds (a tag CSV is scored by tag F1); the "
                                  "first chooses the best epoch (default: the YAML's val entry)."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: <x>/images beside <x>/annotations/)."),
    classes: Optional[Path] = typer.Option(None, help="Mapping file of class folders and tags: name -> garment "
                                           "type or none (configs/fashion-bench-*.yaml)."),
    pseudo_boxes: str = typer.Option("foreground", help="Boxes for class-folder photos: foreground (class-agnostic "
                                     "box from colour) or detector:RUN (that detector's top box, type forced)."),
    teacher: Optional[Path] = typer.Option(None, help="Tag-CSV sources: the detect-train run whose garments the "
                                           "tags filter into pseudo-boxes (cached in the run folder)."),
    teacher_conf: float = typer.Option(DEFAULT_CONF, min=0.0, max=1.0, help="Tag-CSV sources: a teacher garment "
                                       "of a tagged type is kept from this score (chosen on val, BENCHMARKS.md)."),
    teacher_tta: bool = typer.Option(False, "--teacher-tta", help="Tag-CSV sources: the teacher also reads the "
                                     "mirror image of each photo (twice the time)."),
    epoch_size: Optional[int] = typer.Option(None, help="Samples per epoch over all sources (default: their total)."),
    balance_types: bool = typer.Option(False, help="faster-rcnn, class folders: draw every garment type equally "
                                       "often within their garment photos (the no-garment photos keep their own "
                                       "share)."),
    detector: str = typer.Option("faster-rcnn", help="faster-rcnn (EfficientNet-Lite0 FPN) or yolo (YOLO head on "
                                 "EfficientNet-Lite0); both start from the offline ImageNet weights."),
    weights: Optional[str] = typer.Option(None, help="yolo: an ultralytics .yaml or .pt of your own instead of the "
                                          "Lite0 model; faster-rcnn: a detect-train run folder to fine-tune, "
                                          "'none' (random init) or 'coco' (torchvision, needs the internet)."),
    epochs: int = typer.Option(12),
    batch: int = typer.Option(4),
    image_size: int = typer.Option(416, help="faster-rcnn: shorter image side at inference; yolo: imgsz."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: the backend's)."),
    project: Path = typer.Option(Path("runs/detect"), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: detector-<timestamp>)."),
    resume: bool = typer.Option(False, help="Continue project/name from its last checkpoint."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    trainable_stages: int = typer.Option(4, help="Backbone blocks (of 7, from the top) that learn; the rest keep ImageNet weights."),
    device: str = typer.Option("cpu", help="faster-rcnn: cpu or cuda (cuda:LOCAL_RANK under torchrun); yolo: "
                               "ultralytics' --device, e.g. 0,1 (it runs its own DDP)."),
) -> None:
    """Train a garment detector (YOLO or Faster R-CNN) on boxes from one or several sources; writes a run folder."""
    from detectors.train import DetectTrainConfig, train_detector

    cfg = DetectTrainConfig(data=list(data), val=list(val), images=str(images) if images else None,
                            classes=str(classes) if classes else None, pseudo_boxes=pseudo_boxes,
                            teacher=str(teacher) if teacher else None, teacher_conf=teacher_conf,
                            teacher_tta=teacher_tta,
                            epoch_size=epoch_size, balance_types=balance_types, detector=detector, weights=weights,
                            epochs=epochs, batch=batch, image_size=image_size, lr=lr,
                            trainable_stages=trainable_stages, device=device,
                            project=str(project), name=name, resume=resume, threads=threads)
    try:
        run = train_detector(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as e:  # a DataError is a ValueError
        fail(str(e))
    typer.echo(f"run folder: {run}")


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

    set_threads(threads)
    m = validate_run(run, str(data), str(images) if images else None, out, batch)
    typer.echo(f"mAP@[.5:.95] {m['map']:.4f}  mAP@.5 {m['map50']:.4f}")
    for t, v in m["per_class"].items():
        typer.echo(f"  {t:10s} mAP {v['map']:.4f}  mAP@.5 {v['map50']:.4f}  ({v['n_gt']} boxes)")


def classify_train(
    data: list[Path] = typer.Option(..., help="Training labels: COCO detection json (garment boxes + attributes), a "
                                    "class folder (with --classes), FashionAI label.csv (image-level, no boxes) or "
                                    "a tag CSV (image,tags, with --classes and --detector: the fine category the "
                                    "tags pin down, on the detector's boxes). Repeat to train one model on several."),
    val: list[Path] = typer.Option(..., help="Validation labels, one per --data, same order."),
    schema: Optional[Path] = typer.Option(None, help="attributes.json {key: [values]} for label CSVs (default: the "
                                          "one beside the CSV, else FashionAI's)."),
    classes: Optional[Path] = typer.Option(None, help="Mapping file for class-folder and tag --data/--val (name -> "
                                           "type, attribute values); class-folder photos train on foreground boxes."),
    teacher_conf: float = typer.Option(DEFAULT_CONF, min=0.0, max=1.0, help="Tag CSVs: a --detector garment of a "
                                       "tagged type is kept from this score."),
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
    weights: Optional[Path] = typer.Option(None, help="classify-train run to fine-tune: its backbone, and the heads "
                                           "of keys with the same values (default: start from --pretrained)."),
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
            fail(f"--key-types must be key=type1,type2, got {item!r}")
        types[key] = [t for t in names.split(",") if t]
    cfg = AttributeTrainConfig(
        data=[str(p) for p in data], val=[str(p) for p in val], schema=str(schema) if schema else None,
        classes=str(classes) if classes else None, detector=str(detector) if detector else None, box_errors=str(box_errors) if box_errors else None,
        jitter=jitter, key_types=types, crop=crop, epochs=epochs, image_size=image_size, padding=padding,
        batch_size=batch_size,
        backbone=backbone, pretrained=pretrained, weights=str(weights) if weights else None, lr=lr, backbone_lr_mult=backbone_lr_mult, schedule=schedule,
        freeze_epochs=freeze_epochs, balance=balance, select=select, flip_tta=flip_tta, workers=workers,
        device=device, threads=threads, seed=seed, project=str(project), name=name, resume=resume,
        teacher_conf=teacher_conf)
    if resume and not name:
        fail("--resume needs --name (the run folder under --project to continue)")
    try:
        run = train(cfg)
    except (DataError, ImageReadError, ValueError, FileExistsError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(f"run folder: {run}")


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
    head_channels: str = typer.Option("128,128,128", help="Channels of the head's 2x deconvolutions, comma-"
                                      "separated; three of them bring the backbone's 1/32 map to the heatmaps' 1/4."),
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
    try:
        deconv_channels = [int(v) for v in head_channels.split(",")]
        if len(deconv_channels) != 3 or min(deconv_channels) < 1:
            raise ValueError
    except ValueError:
        typer.echo(f"fashion2stage: --head-channels must be three positive integers like 128,64,32, "
                   f"got {head_channels!r}", err=True)
        raise typer.Exit(code=2) from None
    paths = {k: str(v) if v else None for k, v in dict(val=val, val_images=val_images, box_errors=box_errors).items()}
    cfg = KeypointTrainConfig(data=[str(d) for d in data] if len(data) > 1 else str(data[0]),
                              images=[str(i) for i in images] if len(images) > 1 else str(images[0]) if images else None,
                              **paths, jitter=jitter, width=width, height=height, epochs=epochs,
                              batch_size=batch_size, lr=lr, sigma=sigma, deconv_channels=deconv_channels,
                              pretrained=pretrained, flip_test=flip_test, seed=seed, device=device,
                              threads=threads, project=str(project), name=name, resume=resume)
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


def type_head_train(
    classifier: Path = typer.Option(..., help="classify-train run folder to add the garment-type check to."),
    data: list[str] = typer.Option(..., help="Labelled boxes: COCO detection or keypoints json, or a class folder "
                                   "(<dir>/<class>/<image>, needs --classes). Repeat for several sources."),
    out: Path = typer.Option(..., help="New attribute run folder: the classifier plus the type head."),
    classes: Optional[Path] = typer.Option(None, help="Class-folder mapping file: class -> garment type or none."),
    images: Optional[Path] = typer.Option(None, help="Image root of COCO sources (default: beside the json)."),
    detector: Optional[Path] = typer.Option(None, help="Detector run whose boxes on the training photos are added, "
                                            "labelled by overlap (use the one that will run before this model)."),
    conf: float = typer.Option(0.1, help="Score from which detector boxes are added."),
    max_boxes: int = typer.Option(10, min=0, help="At most this many detector boxes per photo, best first."),
    max_photos: Optional[int] = typer.Option(None, min=1, help="A sample of at most this many photos per source "
                                             "(a class folder's garment and no-garment photos count as two)."),
    cache: Optional[Path] = typer.Option(None, help="Folder of per-source feature files, reused by later runs "
                                         "(default: <out>/features)."),
    c: Optional[float] = typer.Option(None, help="Logistic-regression C (default: photo-grouped cross-validation)."),
    item_head: bool = typer.Option(True, "--item-head/--no-item-head", help="With class-folder sources, also fit "
                                   "the item-type head (used by predict --single-item) on all their garment photos."),
    device: str = typer.Option("cpu"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Fit the garment check of an attribute run: a linear head on its crop features whose p(no garment) lets
    predict drop hats, shoes and other non-garments among the detected garments (classifiers/type_head.py). With
    class-folder sources, also its item-type head, which predict --single-item uses to type a product photo's item."""
    from classifiers.train_type_head import TypeHeadConfig, train_type_head  # noqa: PLC0415
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415

    set_threads(threads)
    cfg = TypeHeadConfig(classifier=str(classifier), data=list(data), out=str(out),
                         classes=str(classes) if classes else None, images=str(images) if images else None,
                         detector=str(detector) if detector else None, conf=conf, max_boxes=max_boxes,
                         max_photos=max_photos, cache=str(cache) if cache else None, c=c,
                         item_head=item_head, device=device)
    try:
        run = train_type_head(cfg, log=typer.echo)
    except (DataError, ImageReadError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(f"run folder: {run}")
