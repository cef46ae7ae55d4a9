"""Run-folder plots of a detector: precision-recall curves per garment type (per-epoch curves:
:func:`fashion2stage.engine.plot_results`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def plot_pr_curves(gt, preds, out_png: Path) -> None:
    """Precision against recall at IoU 0.5, one line per garment type, from pycocotools' accumulated array
    (the same evaluation as ``coco_detection_eval``, re-run here because it returns only the summary)."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    from pycocotools.coco import COCO  # noqa: PLC0415
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    from fashion2stage.formats.coco import dataset_to_coco, detections_to_coco_results  # noqa: PLC0415

    results = detections_to_coco_results(preds, gt)
    if not results:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset_to_coco(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # IoU .5, 101 recall points, categories, all areas, 100 dets
    recall = ev.params.recThrs
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, k]
        if (p > -1).any():
            name = coco_gt.cats[cat_id]["name"]
            ax.plot(recall, np.where(p > -1, p, np.nan), label=f"{name} AP50 {p[p > -1].mean():.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("PR at IoU 0.5")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
