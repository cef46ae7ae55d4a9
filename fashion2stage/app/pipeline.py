"""The two-stage pipeline: detector -> padded crops -> attribute heads and keypoint model -> ImagePrediction.

One garment record, ``results.GarmentPrediction``, goes through every stage (all frames are image pixels unless a
name says ``_crop``):

    detector.predict(images)              -> per image, records with type, score and box, best first
    attributes.predict(crops of them all) -> each record's readings: attribute probabilities and the type heads'
                                             outputs (roles.AttributeOutput: p(garment), item-type probs, p_single)
    the garment check                     -> records whose score x p(garment) is under conf are dropped
    the photo kind, single-item rule      -> a single-item photo keeps its first record, typed by :func:`item_type`
    attributes of each record             -> the keys its type carries
    image-level answer per key            -> LabelSet.answering_garment, else a crop of the whole image
    keypoints.predict(crops, types)       -> points in the crop frame -> CropTransform.to_image -> the record
                                             (a keypoint model that shares the attribute model's backbone,
                                             classifiers/crop_models.py, decodes the heatmaps of the attribute
                                             pass instead: one backbone pass per garment)
    -> one ImagePrediction per image (fashion2stage/results.py; its to_json() is the predictions.jsonl line, and the
       only place where numbers are rounded)

Any of the three models may be absent (``None``); without a detector no garment is found and every image-level
answer comes from the whole image.

Robustness (``__call__``): an image over ``max_side`` is scaled down first and its prediction scaled back to its
own frame; a photo too thin for the detector (over ``max_aspect``: 20000x1 pixels) is padded for the detector; and a
batch that raises is run again image by image, so that only the image that raises gets an error record.

Single-item mode (catalogue and marketplace photos of one item) keeps one garment per photo, the best one the check
leaves, and decides its type from the detector and the attribute model's item-type head together (:func:`item_type`;
docs/OUTPUT.md). Which photos get it: those the attribute model's photo-kind head judges single-item, or all / none
with ``single_item`` True / False (--single-item / --multi-item; :func:`judge`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from fashion2stage.geometry import box_iou, crop, pad_to_aspect
from fashion2stage.images import MAX_SIDE, fitted_size
from fashion2stage.labels import LabelSet
from fashion2stage.results import AttributePrediction, GarmentPrediction, ImagePrediction, PhotoKind
from fashion2stage.roles import (MULTI_ITEM, NO_GARMENT, SINGLE_ITEM, AttributeClassifier, Detector,
                                 KeypointEstimator)

# Faster R-CNN proposals scored per photo at inference, at most (BENCHMARKS.md, "Predict speed": the sweep this was
# chosen from, and its price); the shipped detector was trained with 300
PROPOSALS = 100
# single-item mode: the detector's boxes from this score that overlap the item by SAME_ITEM_IOU are its candidate
# types (a constant below predict's threshold, so that predict at 0.25 and evaluate at 0.05 type an item alike)
ITEM_VOTE_SCORE = 0.05
SAME_ITEM_IOU = 0.5
# A photo whose longer side is over this many times its shorter side is padded (grey, below or right of it) for the
# detector: Faster R-CNN's resize gives a thin photo a side of 0 pixels past about 665:1 with the shipped settings
# (ONNX Runtime and torch both raise), a YOLO letterbox alike. Its own pixels keep their coordinates.
MAX_ASPECT = 20.0
FAILURE_CHARS = 300  # an error record's message is cut here: ONNX Runtime's run messages are long


def item_type(item, votes: list, classes: list[str], probs: np.ndarray) -> str:
    """The type of a single-item photo's one ``item``: the detector proposes, the item-type head re-ranks. Every
    type the detector gave a box of ``votes`` overlapping the item by IoU >= SAME_ITEM_IOU scores its best such
    box's score x the head's probability of it (``probs``, in ``classes`` order); the highest wins. A type the
    detector did not propose cannot win, so a head that is sure and wrong on photos unlike its training photos
    cannot overrule a detector that is sure. An item of a type the head was not fitted on keeps it (the head
    cannot weigh it). ``item`` and ``votes`` are garments with ``type``, ``score`` and ``box_xyxy``."""
    if item.type not in classes:
        return item.type
    det = {item.type: float(item.score)}
    if votes:
        iou = box_iou(np.asarray(item.box_xyxy, np.float64)[None], np.stack([v.box_xyxy for v in votes]))[0]
        for v, o in zip(votes, iou):
            if o >= SAME_ITEM_IOU:
                det[v.type] = max(det.get(v.type, 0.0), float(v.score))
    fused = {t: s * float(probs[classes.index(t)]) for t, s in det.items() if t in classes}
    return max(fused, key=fused.get) if max(fused.values()) > 0 else item.type


def judge(single_item: bool | None, p_single: float | None, threshold: float | None) -> PhotoKind:
    """The kind of one photo (docs/OUTPUT.md, "Photo kind"): the flag when given, else the photo-kind head's
    ``p_single`` against its ``threshold``, else multi-item (no head, no flag: as before the head existed)."""
    if single_item is not None:
        return PhotoKind(SINGLE_ITEM if single_item else MULTI_ITEM, p_single, "flag")
    if p_single is None or threshold is None:
        return PhotoKind(MULTI_ITEM, p_single, "default")
    return PhotoKind(SINGLE_ITEM if p_single >= threshold else MULTI_ITEM, p_single, "model")


@dataclass
class Pipeline:
    detector: Detector | None = None
    attributes: AttributeClassifier | None = None
    keypoints: KeypointEstimator | None = None
    conf: float = 0.25
    max_garments: int = 20  # per image, highest scores first: bounds the work a cluttered photo can cause
    flip_tta: bool = False
    keypoint_flip: bool = False  # average heatmaps over the mirrored crop: twice the keypoint work (BENCHMARKS.md)
    # one item per photo: keep the best garment, typed by the detector and the item-type head (module docstring);
    # None: for the photos the photo-kind head judges single-item, True / False: for every photo / none
    single_item: bool | None = None
    max_side: int | None = MAX_SIDE  # longer side, in pixels, of the images the models see (larger: scaled down)
    max_aspect: float | None = MAX_ASPECT  # thinner photos are padded for the detector (None: never)
    # wall seconds spent in each stage over all calls (crops included): where predict's time goes
    seconds: dict = field(default_factory=lambda: {"detector": 0.0, "attributes": 0.0, "keypoints": 0.0})

    def detect(self, images: list[np.ndarray], conf: float | None = None) -> list[list[GarmentPrediction]]:
        """Per image, the detector's garments scoring at least ``conf`` (default: the pipeline's), best first, at
        most ``max_garments``: new records, whatever the detector keeps of its own."""
        if self.detector is None:
            return [[] for _ in images]
        seen = [img if self.max_aspect is None else pad_to_aspect(img, self.max_aspect) for img in images]
        found = self.detector.predict(seen, conf=self.conf if conf is None else conf, batch_size=max(1, len(images)))
        found = [[replace(g) for g in gs] if s is img else _inside(gs, img.shape)
                 for gs, s, img in zip(found, seen, images)]
        return [sorted(g, key=lambda x: -x.score)[: self.max_garments] for g in found]

    def __call__(self, images: list[np.ndarray], names: list[str] | None = None,
                 sizes: list[tuple[int, int]] | None = None) -> list[ImagePrediction]:
        """Predict a batch of (H, W, 3) uint8 RGB images; never raises for one image's sake (module docstring).

        ``names`` become ``ImagePrediction.image`` (default ""). ``sizes``: each image's original ``(width,
        height)`` where it was decoded smaller (images.load_photo): boxes, landmarks, ``width`` and ``height`` are
        reported in that frame (default: the image's own). An image that fails alone gets the error record
        ``prediction failed: <exception>`` (docs/OUTPUT.md); ``orig_img`` is the image the models saw."""
        names = [""] * len(images) if names is None else list(names)
        sizes = [(int(i.shape[1]), int(i.shape[0])) for i in images] if sizes is None else [tuple(s) for s in sizes]
        seen = [_fit(img, self.max_side) for img in images]
        try:
            preds = self._predict(seen, names)
        except Exception as e:  # noqa: BLE001  (whatever it is, find the image that causes it)
            preds = [_failed(names[0], e)] if len(seen) == 1 else [self._alone(i, n) for i, n in zip(seen, names)]
        return [p if p.error is not None or (p.width, p.height) == size else p.rescaled(*size)
                for p, size in zip(preds, sizes)]

    def _alone(self, image: np.ndarray, name: str) -> ImagePrediction:
        try:
            return self._predict([image], [name])[0]
        except Exception as e:  # noqa: BLE001
            return _failed(name, e)

    def _predict(self, images: list[np.ndarray], names: list[str]) -> list[ImagePrediction]:
        """One batch as it is, in the images' own frames; raises whatever a model raises (``__call__`` isolates)."""
        t0 = time.perf_counter()
        votes = None
        if self.single_item is not False:  # the boxes down to ITEM_VOTE_SCORE vote on an item's type; items >= conf
            votes = self.detect(images, min(self.conf, ITEM_VOTE_SCORE))
            found = [[g for g in gs if g.score >= self.conf] for gs in votes]
        else:
            found = self.detect(images)
        preds = [ImagePrediction(image=name, width=int(img.shape[1]), height=int(img.shape[0]), orig_img=img,
                                 garments=gs) for name, img, gs in zip(names, images, found)]
        t1 = time.perf_counter()
        if self.attributes is not None:
            self._attributes(preds, votes)
        else:  # no head to judge a photo by: the flag or multi-item; single: the detector's best garment, as typed
            for p in preds:
                p.photo_kind = judge(self.single_item, None, None)
                if self.single_item:
                    p.garments = p.garments[:1]
        t2 = time.perf_counter()
        if self.keypoints is not None:
            self._keypoints(preds)
        t3 = time.perf_counter()
        for stage, dt in (("detector", t1 - t0), ("attributes", t2 - t1), ("keypoints", t3 - t2)):
            self.seconds[stage] += dt
        return preds

    def _read(self, items: list[tuple[np.ndarray, GarmentPrediction]]) -> None:
        """The attribute model on the crop of each ``(image, record)``: each record gets its readings."""
        cut = [crop(image, g.box, self.attributes.crop_spec) for image, g in items]
        shared = self.keypoints is not None and self.keypoints.shared
        out = self.attributes.predict(np.stack([c for c, _ in cut]), flip_tta=self.flip_tta,
                                      mirror_heatmaps=shared and self.keypoint_flip)
        maps = self.keypoints.merged(out.heatmaps, out.heatmaps_mirrored) if shared else None
        for n, (_, g) in enumerate(items):
            if maps is not None:  # the keypoint head read the same pass: its heatmaps wait for the keypoint stage
                g.heatmaps, g.crop_transform = maps[n], cut[n][1]
            g.probs = {k: p[n] for k, p in out.attributes.items()}
            if out.type_probs is not None:
                g.p_garment = 1.0 - float(out.type_probs[n][self.attributes.type_classes.index(NO_GARMENT)])
            if out.item_type_probs is not None:
                g.item_type_probs = out.item_type_probs[n]
            if out.p_single is not None:
                g.p_single = float(out.p_single[n])

    def _attributes(self, preds: list[ImagePrediction], votes: list[list[GarmentPrediction]] | None) -> None:
        """Every record's readings, then per photo the photo kind, the garment check, the single-item rule, each
        record's attributes and the image-level answers (module docstring)."""
        heads, labels = self.attributes, self.attributes.labels
        found = [(p.orig_img, g) for p in preds for g in p.garments]
        if found:
            self._read(found)
        # the whole image, read as one more record where no garment was detected (the photo is judged by it) or
        # where the garments left after the check answer not every key
        wholes: dict[int, GarmentPrediction] = {}
        for n, p in enumerate(preds):
            top = p.garments[0] if p.garments else None  # the photo is judged by its top garment, before the check
            if top is not None:
                p.photo_kind = judge(self.single_item, top.p_single, heads.photo_kind_threshold)
                if heads.type_classes:
                    p.garments = [g for g in p.garments if g.score * g.p_garment >= self.conf]
                if p.photo_kind.value == SINGLE_ITEM and p.garments:
                    item = p.garments[0]
                    if heads.item_type_classes is not None and item.item_type_probs is not None:
                        item.type = item_type(item, votes[n], heads.item_type_classes, item.item_type_probs)
                    p.garments = [item]
            for g in p.garments:
                g.attributes = {k: AttributePrediction.from_probs(labels.attributes[k], g.probs[k])
                                for k in labels.keys_for_type(g.type)}
            if top is None or any(labels.answering_garment(p.garments, k) is None for k in labels.attributes):
                wholes[n] = GarmentPrediction("", 1.0, [0.0, 0.0, float(p.width), float(p.height)])
        if wholes and labels.attributes:
            self._read([(preds[n].orig_img, w) for n, w in wholes.items()])
        for n, p in enumerate(preds):
            whole = wholes.get(n)
            if p.photo_kind is None:
                p.photo_kind = judge(self.single_item, None if whole is None else whole.p_single,
                                     heads.photo_kind_threshold)
            p.attributes = {k: _answer(p.garments, k, labels, whole) for k in labels.attributes}

    def _keypoints(self, preds: list[ImagePrediction]) -> None:
        """Each record's landmarks, from the keypoint model on its crop, in image pixels."""
        labels = self.keypoints.labels
        # the type the attribute stage left, not the detector's: a type without landmarks in this label set (the
        # shipped model's skirts and dresses) would only cost a pass that yields NaNs
        todo = [g for p in preds for g in p.garments if labels.keypoint_indices(g.type)]
        read = [g for g in todo if g.heatmaps is not None]  # read by the attribute pass (a shared backbone)
        if read:
            pts = self.keypoints.points(np.stack([g.heatmaps for g in read]), [g.type for g in read])
            self._place(read, [g.crop_transform for g in read], pts)
        rest = [g for g in todo if g.heatmaps is None]
        if rest:
            images = {id(g): p.orig_img for p in preds for g in p.garments}
            cut = [crop(images[id(g)], g.box, self.keypoints.crop_spec) for g in rest]
            pts = self.keypoints.predict(np.stack([c for c, _ in cut]), [g.type for g in rest],
                                         flip_test=self.keypoint_flip)
            self._place(rest, [t for _, t in cut], pts)
        for p in preds:
            for g in p.garments:
                g.heatmaps = g.crop_transform = None

    def _place(self, garments: list[GarmentPrediction], transforms: list, pts_crop: np.ndarray) -> None:
        """Each garment's landmarks from its (K, 3) crop-frame points (NaN outside its type's subset), in image
        pixels."""
        for g, t, p in zip(garments, transforms, pts_crop):
            g.keypoints = {name: (float(x), float(y), float(s))
                           for name, (x, y, s) in zip(self.keypoints.labels.keypoints, t.to_image(p))
                           if np.isfinite(x)}


def _answer(garments: list[GarmentPrediction], key: str, labels: LabelSet,
            whole: GarmentPrediction | None) -> AttributePrediction:
    """The image-level answer for ``key``: the answering garment's (its index in ``garments``), else the whole
    image's reading."""
    j = labels.answering_garment(garments, key)
    if j is None:
        return AttributePrediction.from_probs(labels.attributes[key], whole.probs[key])
    answer = garments[j].attributes[key]
    return replace(answer, garment=j, probs=list(answer.probs))


def _fit(image: np.ndarray, max_side: int | None) -> np.ndarray:
    w, h = fitted_size(int(image.shape[1]), int(image.shape[0]), max_side)
    return image if (h, w) == image.shape[:2] else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _inside(garments: list[GarmentPrediction], shape: tuple[int, ...]) -> list[GarmentPrediction]:
    """Boxes found on a padded image, clipped to the image itself; a box left without area is dropped."""
    h, w = shape[:2]
    out = []
    for g in garments:
        box = np.clip(g.box_xyxy, 0.0, [w, h, w, h])
        if box[2] > box[0] and box[3] > box[1]:
            out.append(replace(g, box=box.tolist()))
    return out


def _failed(name: str, e: Exception) -> ImagePrediction:
    line = " ".join(f"prediction failed: {type(e).__name__}: {e}".split())  # one line, whatever the message
    return ImagePrediction(image=name, error=line[:FAILURE_CHARS])


def default_batch_size(runtime: str, device: str) -> int:
    """Images per batch when the user does not say. BENCHMARKS.md: torch on 2 CPU cores ran 2.8 img/s one image at
    a time against 1.7 at batch 8; ONNX Runtime and GPUs gain from batches."""
    from fashion2stage.nets import resolve_runtime  # noqa: PLC0415

    return 1 if resolve_runtime(runtime, device) == "torch" and device == "cpu" else 8


def default_bundle() -> Path:
    """The model bundle shipped with the package (detector, attributes, keypoints run folders)."""
    return Path(__file__).resolve().parents[1] / "default_model"


def load_pipeline(detector: str | Path | None = None, attributes: str | Path | None = None,
                  keypoints: str | Path | None = None, device: str = "cpu", use_default: bool = True,
                  runtime: str = "auto", threads: int = 0, conf: float = 0.25, flip_tta: bool = False,
                  max_garments: int = 20, keypoint_flip: bool = False, detector_size: int | None = None,
                  proposals: int | None = None, single_item: bool | None = None) -> Pipeline:
    """Load the run folders given; any not given comes from the shipped bundle when ``use_default``.

    ``runtime``: ``"auto"`` runs each network through ONNX Runtime on the CPU where onnxruntime is installed (a
    model it fails for stays on torch, with one line on stderr), ``"onnx"`` always (else an error), ``"torch"``
    never; chosen as each model is loaded (fashion2stage/nets.py, docs/runtime.md), its ONNX file exported once into
    a per-user cache and run with ``threads`` intra-op threads (0: all cores). Pre- and post-processing are the
    same code with both.
    ``detector_size`` / ``proposals``: a Faster R-CNN detector's shorter photo side and proposals per photo at
    inference (default: the size it was validated at, detect-train's ``--image-size``, and at most
    :data:`PROPOSALS` proposals; smaller sizes are faster and cost street accuracy, BENCHMARKS.md "Predict speed").
    ``conf``, ``flip_tta``, ``max_garments``, ``keypoint_flip`` and ``single_item``: see Pipeline."""
    from classifiers.crop_models import load_crop_models  # noqa: PLC0415  (heavy imports only when predicting)
    from detectors.load import load_detector, trained_proposals  # noqa: PLC0415
    from fashion2stage.app.runtime import check_device  # noqa: PLC0415
    from fashion2stage.nets import resolve_runtime  # noqa: PLC0415

    check_device(device)  # a missing GPU is named before any model file is read
    resolve_runtime(runtime, device)  # an unknown runtime too

    bundle = default_bundle()
    runs = {}
    for stage, given in (("detector", detector), ("attributes", attributes), ("keypoints", keypoints)):
        if given is None and use_default and (bundle / stage / "config.json").is_file():
            given = bundle / stage
        runs[stage] = given
    if all(v is None for v in runs.values()):
        raise FileNotFoundError(f"no model given and no default bundle at {bundle}: pass --detector/--classifier/--keypoints")
    det = None
    if runs["detector"]:  # a Faster R-CNN's default proposals come from BENCHMARKS.md's sweep
        trained = trained_proposals(runs["detector"])
        det = load_detector(runs["detector"], device, runtime, threads, size=detector_size or None,
                            proposals=proposals or (min(PROPOSALS, trained) if trained else None))
    # one network for both crop models where the keypoint run shares the attribute run's backbone
    attrs, kps = load_crop_models(runs["attributes"], runs["keypoints"], device, runtime, threads)
    return Pipeline(
        detector=det, attributes=attrs, keypoints=kps,
        conf=conf, flip_tta=flip_tta, max_garments=max_garments, keypoint_flip=keypoint_flip, single_item=single_item)
