"""Teacher -> student: boxes for tagged photos (:mod:`fashion2stage.formats.tags`) from a teacher detector's
garments on them, filtered by what the tags say.

The rules, per photo (its *tagged types*: the garment types its tags name):

- **keep** a teacher garment when its type is tagged and its score is at least ``conf``: it becomes a garment of
  the photo (a pseudo-box, with the teacher's score);
- **drop** a teacher garment whose type the tags rule out, whatever its score: the photo then trains that region as
  background, a negative for that type (the tags say no such garment is there);
- **ignore** a tagged type with no kept garment: it is listed in ``ImageRecord.ignore_types``, and the detector
  trainer must not learn it as background on this photo (Faster R-CNN: :mod:`detectors.faster_rcnn_train` leaves
  that type out of the box head's background loss on the photo; a YOLO export cannot say "ignore", so there the
  type simply has no box);
- on a **partially tagged** photo (a ``complete: false`` tag, :func:`fashion2stage.formats.tags.fully_tagged`) no
  type is ruled out: a garment of a type the tags do not name is kept like a tagged one (score at least ``conf``:
  the teacher alone vouches for it), and every type without a kept garment is ignored;
- **pin** attribute values: a kept garment gets the attribute values (fine category ...) that the photo's tags of
  its type agree on (:func:`fashion2stage.formats.tags.pinned_attributes`), as marks in ``labels``' values;
- a photo with **no garment tag** is left out (no garment tag is not proof that no garment is visible), and so is a
  photo with **no kept garment** (it would teach nothing but background, where a tagged garment stands).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from fashion2stage.formats.tags import fully_tagged, pinned_attributes, tagged_types
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment
from fashion2stage.results import GarmentPrediction

DEFAULT_CONF = 0.7  # chosen on val (BENCHMARKS.md, "Weak labels: the teacher's threshold")


def pseudo_label(dataset: Dataset, detections: dict[str, list[GarmentPrediction]], conf: float = DEFAULT_CONF,
                 labels: LabelSet | None = None, log=print) -> Dataset:
    """A copy of the tag ``dataset`` whose photos carry their kept teacher garments and ``ignore_types``;
    ``detections``: the teacher's garments per ``ImageRecord.file`` (e.g. :func:`fashion2stage.detections.detect_cached`
    at a low threshold). Photos without detections (not run) are left out. One summary line goes to ``log``."""
    labels = labels or dataset.labels
    counts, records = Counter(), []
    for r in dataset.records:
        types = tagged_types(r, dataset.tags)
        if not types:
            counts["photos without a garment tag"] += 1
            continue
        if r.file not in detections:
            counts["photos the teacher did not see"] += 1
            continue
        complete = fully_tagged(r, dataset.tags)
        kept = []
        for g in detections[r.file]:
            if g.type not in types and complete:
                counts["boxes of untagged types dropped"] += g.score >= conf
                continue
            if g.score < conf:
                continue
            if g.type not in types:
                counts["boxes of untagged types kept (partial tags)"] += 1
            marks = {}
            for k, v in pinned_attributes(r, dataset.tags, g.type).items():
                values = labels.attributes.get(k)
                if values is not None and v in values:
                    marks[k] = "".join("y" if x == v else "n" for x in values)
            kept.append(Garment(type=g.type, box_xyxy=g.box_xyxy, attributes=marks, score=g.score))
        if not kept:
            counts["photos with no kept box"] += 1
            continue
        ignore = sorted((types if complete else set(labels.garment_types)) - {g.type for g in kept})
        counts["kept boxes"] += len(kept)
        counts["tagged types without a box (ignored)"] += len(set(ignore) & types)
        counts["untagged types without a box (ignored, partial tags)"] += len(set(ignore) - types)
        counts["kept boxes with a pinned attribute"] += sum(1 for g in kept if g.attributes)
        records.append(replace(r, garments=kept, ignore_types=ignore))
    log(f"pseudo-boxes (teacher, score >= {conf}) for {dataset.source}: {len(records)} of {len(dataset.records)} "
        "photos kept; " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    return replace(dataset, records=records)
