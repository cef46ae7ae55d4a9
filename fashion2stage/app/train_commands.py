"""The training commands of the ``fashion2stage`` command line (``detect-train``, ``detect-val``,
``classify-train``, ``keypoints-train``): they parse flags and call the trainers; cli.py registers them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fashion2stage.app.cli_common import echo_main, fail, set_threads
from fashion2stage.train_specs import AttributeTrainConfig as A, DetectTrainConfig as D, default
from fashion2stage.train_specs import KeypointTrainConfig as K, TypeHeadConfig as T

# Option defaults are read from the settings classes of fashion2stage/train_specs.py, never repeated here: D for
# detect-train, A for classify-train, K for keypoints-train, T for type-head-train.


def detect_train(
    data: list[str] = typer.Option(..., help="COCO, YAML, class folder or tag CSV; repeatable."),
    val: list[str] = typer.Option([], help="Validation set(s); the first picks the best."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: beside annotations/)."),
    classes: Optional[Path] = typer.Option(None, help="Mapping of class folders and tags -> type."),
    pseudo_boxes: str = typer.Option(D.pseudo_boxes, help="Class-folder boxes: foreground or detector:RUN."),
    teacher: Optional[Path] = typer.Option(None, help="Tag CSVs: the detector run that makes the boxes."),
    teacher_conf: float = typer.Option(D.teacher_conf, min=0.0, max=1.0,
                                       help="Tag CSVs: keep teacher garments from this score."),
    teacher_tta: bool = typer.Option(D.teacher_tta, "--teacher-tta",
                                     help="Tag CSVs: the teacher reads mirror images too."),
    epoch_size: Optional[int] = typer.Option(None, help="Samples per epoch (default: all sources' total)."),
    balance_types: bool = typer.Option(D.balance_types, "--balance-types",
                                       help="Draw class folders' garment types equally."),
    detector: str = typer.Option(D.detector, help="faster-rcnn or yolo (both on Lite0, offline)."),
    weights: Optional[str] = typer.Option(None, help="Start: run folder, YOLO .yaml/.pt, none, coco."),
    epochs: int = typer.Option(D.epochs, help="Passes over the training set."),
    batch: int = typer.Option(D.batch, help="Images per batch (per process under torchrun)."),
    image_size: int = typer.Option(D.image_size, help="Shorter image side (yolo: imgsz)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: the backend's)."),
    project: Path = typer.Option(Path(D.project), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: a timestamp)."),
    resume: bool = typer.Option(D.resume, help="Continue project/name from its last checkpoint."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    trainable_stages: int = typer.Option(D.trainable_stages, help="Backbone blocks (of 7) that learn."),
    device: str = typer.Option(D.device, help="cpu or cuda; yolo: ultralytics' device (0,1)."),
    seed: int = typer.Option(D.seed, help="Seed of shuffling, augmentation and new layers."),
) -> None:
    """Train a garment detector (YOLO or Faster R-CNN) on boxes from one or several sources; writes a run folder."""
    from detectors.train import train_detector

    cfg = D(data=list(data), val=list(val), images=str(images) if images else None,
            classes=str(classes) if classes else None, pseudo_boxes=pseudo_boxes,
            teacher=str(teacher) if teacher else None, teacher_conf=teacher_conf, teacher_tta=teacher_tta,
            epoch_size=epoch_size, balance_types=balance_types, detector=detector, weights=weights,
            epochs=epochs, batch=batch, image_size=image_size, lr=lr, trainable_stages=trainable_stages,
            device=device, project=str(project), name=name, resume=resume, threads=threads, seed=seed)
    try:
        run = train_detector(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as e:  # a DataError is a ValueError
        fail(str(e))
    echo_main(f"run folder: {run}")


def detect_val(
    run: Path = typer.Argument(..., help="A detect-train run folder."),
    data: Path = typer.Option(..., help="Labelled COCO json, or a dataset YAML's val."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: <x>/images beside <x>/annotations/)."),
    out: Optional[Path] = typer.Option(None, help="Where metrics.json etc. go (default: the run folder)."),
    batch: int = typer.Option(8, help="Images per batch."),
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
    data: list[Path] = typer.Option(..., help="COCO, class folder or (tag) CSV; repeatable."),
    val: list[Path] = typer.Option(..., help="Validation labels, one per --data, same order."),
    schema: Optional[Path] = typer.Option(None, help="attributes.json of label CSVs (or beside)."),
    classes: Optional[Path] = typer.Option(None, help="Mapping of class folders and tags."),
    teacher_conf: float = typer.Option(A.teacher_conf, min=0.0, max=1.0,
                                       help="Tag CSVs: keep a garment from this score."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run: crops of boxless labels."),
    box_errors: Optional[Path] = typer.Option(None, help="box_errors.json (default: --detector's)."),
    jitter: Optional[str] = typer.Option(None, help="Box jitter: detector, default or none."),
    key_types: list[str] = typer.Option([], help="key=type1,type2: types that carry a key."),
    crop: str = typer.Option(A.crop, help="two-stage (box crops) or whole (ablation)."),
    epochs: int = typer.Option(A.epochs, help="Passes over the training set."),
    image_size: int = typer.Option(A.image_size, min=1, help="Square crop side, pixels."),
    padding: float = typer.Option(A.padding, min=1.0, help="Crop side / box side (1.0: tight crop)."),
    batch_size: int = typer.Option(A.batch_size, help="Crops per batch (per process under torchrun)."),
    backbone: str = typer.Option(A.backbone, help="efficientnet_lite0 (offline) or a timm name."),
    pretrained: bool = typer.Option(A.pretrained, help="Start from pretrained backbone weights."),
    weights: Optional[Path] = typer.Option(None, help="classify-train run to fine-tune."),
    lr: float = typer.Option(A.lr, help="Heads' learning rate."),
    backbone_lr_mult: float = typer.Option(A.backbone_lr_mult, help="Backbone lr = --lr x this."),
    schedule: str = typer.Option(A.schedule, help="cosine (with warm-up) or onecycle."),
    freeze_epochs: int = typer.Option(A.freeze_epochs, help="Epochs with a frozen backbone first."),
    balance: str = typer.Option(A.balance, help="none or weights (class weights per key)."),
    select: str = typer.Option(A.select, help="Best-epoch metric: mAP or mean_accuracy."),
    flip_tta: bool = typer.Option(A.flip_tta, "--flip-tta", help="Validate on the crop and its mirror image."),
    project: Path = typer.Option(Path(A.project), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: a timestamp)."),
    resume: bool = typer.Option(A.resume, help="Continue --project/--name from its last.pt."),
    workers: int = typer.Option(A.workers, help="DataLoader worker processes."),
    device: str = typer.Option(A.device, help="cpu or cuda (cuda:LOCAL_RANK under torchrun)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    seed: int = typer.Option(A.seed, help="Seed of shuffling and augmentation."),
) -> None:
    """Train the attribute heads (one backbone, one head per key) on padded, detector-jittered garment crops."""
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415
    from classifiers.train_attributes import train  # noqa: PLC0415

    types = {}
    for item in key_types:
        key, sep, names = item.partition("=")
        if not sep or not key or not names:
            fail(f"--key-types must be key=type1,type2, got {item!r}")
        types[key] = [t for t in names.split(",") if t]
    cfg = A(
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
    echo_main(f"run folder: {run}")


def keypoints_train(
    data: list[Path] = typer.Option(..., help="COCO, FashionAI or DeepFashion2; repeatable."),
    val: Optional[Path] = typer.Option(None, help="Validation keypoints (best epoch by its NE)."),
    images: list[Path] = typer.Option([], help="Image root of each --data, in order."),
    val_images: Optional[Path] = typer.Option(None, help="Image root of --val."),
    box_errors: Optional[Path] = typer.Option(None, help="box_errors.json: jitter like that detector."),
    jitter: str = typer.Option(K.jitter, help="Without --box-errors: default or none."),
    trunk: Optional[Path] = typer.Option(None, help="Attribute run whose backbone to share."),
    trunk_blocks: Optional[int] = typer.Option(None, help="With --trunk: its blocks kept (default all 7)."),
    epochs: int = typer.Option(K.epochs, help="Passes over the training set."),
    image_size: str = typer.Option(f"{K.width}x{K.height}", help="Crop WIDTHxHEIGHT, multiples of 32."),
    batch_size: int = typer.Option(K.batch_size, help="Crops per batch (per process under torchrun)."),
    lr: float = typer.Option(K.lr, help="Learning rate."),
    sigma: float = typer.Option(K.sigma, help="Target heatmaps' Gaussian sigma, heatmap px."),
    head_channels: str = typer.Option(",".join(map(str, default(K, "deconv_channels"))),
                                      help="Channels of the head's 3 deconvolutions."),
    lateral: bool = typer.Option(K.lateral, "--lateral", help="Head also reads stride-16 and -8 maps."),
    upsampling: str = typer.Option(K.upsampling, help="Head stages: deconv or separable (cheaper)."),
    pretrained: bool = typer.Option(K.pretrained, help="Start from ImageNet weights (offline)."),
    flip_test: bool = typer.Option(K.flip_test, help="Validate on the crop and its mirror image."),
    project: Path = typer.Option(Path(K.project), help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: a timestamp)."),
    resume: bool = typer.Option(K.resume, help="Continue --project/--name from its last.pt."),
    device: str = typer.Option(K.device, help="cpu or cuda (cuda:LOCAL_RANK under torchrun)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    seed: int = typer.Option(K.seed, help="Seed of shuffling and augmentation."),
) -> None:
    """Train the heatmap keypoint model on padded, detector-jittered garment crops."""
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415
    from classifiers.train_keypoints import train  # noqa: PLC0415

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
    from fashion2stage.specs import UPSAMPLING  # noqa: PLC0415

    if upsampling not in UPSAMPLING:
        typer.echo(f"fashion2stage: --upsampling must be {' or '.join(UPSAMPLING)}, got {upsampling!r}", err=True)
        raise typer.Exit(code=2)
    paths = {k: str(v) if v else None
             for k, v in dict(val=val, val_images=val_images, box_errors=box_errors, trunk=trunk).items()}
    cfg = K(data=[str(d) for d in data] if len(data) > 1 else str(data[0]),
            images=[str(i) for i in images] if len(images) > 1 else str(images[0]) if images else None,
            **paths, jitter=jitter, width=width, height=height, epochs=epochs,
            batch_size=batch_size, lr=lr, sigma=sigma, deconv_channels=deconv_channels, lateral=lateral,
            upsampling=upsampling,
            trunk_blocks=trunk_blocks,
            pretrained=pretrained, flip_test=flip_test, seed=seed, device=device,
            threads=threads, project=str(project), name=name, resume=resume)
    try:
        run = train(cfg)
        metrics = json.loads((run / "metrics.json").read_text())
    except (DataError, ImageReadError, ValueError, FileExistsError, FileNotFoundError) as e:
        typer.echo(f"fashion2stage: {e}", err=True)
        raise typer.Exit(code=1) from None
    echo_main(str(run))
    for split in ("val_gt_boxes", "val_jittered_boxes"):
        if split in metrics:
            echo_main(f"{split}: NE {metrics[split]['ne']:.2f}%  PCK@0.1 {metrics[split]['pck@0.1']:.3f}")


def type_head_train(
    classifier: Path = typer.Option(..., help="classify-train run to add the check to."),
    data: list[str] = typer.Option(..., help="COCO json or class folder; repeatable."),
    out: Path = typer.Option(..., help="New run folder: the classifier + type head."),
    classes: Optional[Path] = typer.Option(None, help="Class-folder mapping: class -> type or none."),
    images: Optional[Path] = typer.Option(None, help="Image root of COCO sources (or beside)."),
    detector: Optional[Path] = typer.Option(None, help="Detector run whose boxes are added too."),
    conf: float = typer.Option(T.conf, help="Score from which detector boxes are added."),
    max_boxes: int = typer.Option(T.max_boxes, min=0, help="Detector boxes per photo, at most."),
    max_photos: Optional[int] = typer.Option(None, min=1, help="Photos per source, at most."),
    cache: Optional[Path] = typer.Option(None, help="Cache folder (default: the per-user one)."),
    c: Optional[float] = typer.Option(None, help="Logistic-regression C (or cross-validated)."),
    item_head: bool = typer.Option(T.item_head, "--item-head/--no-item-head", help="Also fit the item-type head."),
    device: str = typer.Option(T.device, help="cpu or cuda."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Fit the garment check of an attribute run: a linear head on its crop features whose p(no garment) lets
    predict drop hats, shoes and other non-garments among the detected garments (classifiers/type_head.py). With
    class-folder sources, also its item-type head, which predict --single-item uses to type a product photo's item."""
    from classifiers.train_type_head import train_type_head  # noqa: PLC0415
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415

    set_threads(threads)
    cfg = T(classifier=str(classifier), data=list(data), out=str(out),
            classes=str(classes) if classes else None, images=str(images) if images else None,
            detector=str(detector) if detector else None, conf=conf, max_boxes=max_boxes,
            max_photos=max_photos, cache=str(cache) if cache else None, c=c, item_head=item_head, device=device)
    try:
        run = train_type_head(cfg, log=typer.echo)
    except (DataError, ImageReadError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    echo_main(f"run folder: {run}")


def photo_kind_train(
    classifier: Path = typer.Option(..., help="Attribute run to add the head to."),
    out: Path = typer.Option(..., help="New attribute run: it plus the head."),
    single: list[str] = typer.Option(..., help="One-item photos: folder, json or CSV."),
    multi: list[str] = typer.Option(..., help="Photos of people (street); repeat."),
    val_single: list[str] = typer.Option(..., help="One-item photos for the threshold."),
    val_multi: list[str] = typer.Option(..., help="Photos of people for the threshold."),
    detector: Optional[Path] = typer.Option(None, help="Detector run: its top box is judged."),
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="Top box from this score."),
    max_photos: Optional[int] = typer.Option(None, min=1, help="Photos per source, at most."),
    max_val_photos: Optional[int] = typer.Option(None, min=1, help="Photos per val source, at most."),
    cache: Optional[Path] = typer.Option(None, help="Cache folder (default: the per-user one)."),
    c: Optional[float] = typer.Option(None, help="C (default: cross-validated)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Fit the photo-kind head of an attribute run: from the crop of a photo's top garment, does the photo show
    one item and no person? predict then reads such photos with its single-item rule (classifiers/photo_kind.py)."""
    from classifiers.train_photo_kind import PhotoKindConfig, train_photo_kind  # noqa: PLC0415
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415
    from fashion2stage.errors import DataError, ImageReadError  # noqa: PLC0415

    set_threads(threads)
    cfg = PhotoKindConfig(classifier=str(classifier), out=str(out), single=list(single), multi=list(multi),
                          val_single=list(val_single), val_multi=list(val_multi),
                          detector=str(detector) if detector else None, conf=conf, max_photos=max_photos,
                          max_val_photos=max_val_photos, cache=str(cache) if cache else None, c=c, device=device)
    try:  # the detector as predict runs it (ONNX Runtime, its proposals): the top box predict will judge by
        det = load_pipeline(detector, device=device, use_default=False, threads=threads or 0).detector \
            if detector else None
        run = train_photo_kind(cfg, log=typer.echo, detector=det)
    except (DataError, ImageReadError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    echo_main(f"run folder: {run}")
