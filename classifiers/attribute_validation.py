"""What ``classify-train`` (classifiers/train_attributes.py) reports on its validation crops after each epoch: the
probabilities per key and the mean masked loss (:func:`evaluate`), the marks they are scored against
(:func:`marks_by_key`), and the best epoch's confusion matrices as ``confusion_<key>.png``
(:func:`plot_confusions`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from classifiers.attribute_data import CropDataset


@torch.no_grad()
def evaluate(model, loader, device, keys: list[str], flip_tta: bool = False) -> tuple[dict, float]:
    """Probabilities and marks per key over the labelled samples, and the mean masked loss."""
    model.eval()
    probs = {k: [] for k in keys}
    losses, count = 0.0, 0.0
    for x, targets, mask in loader:
        x = x.to(device)
        logits = model(x)
        if flip_tta:
            logits_f = model(torch.flip(x, dims=[3]))
            p = {k: (torch.softmax(logits[k], 1) + torch.softmax(logits_f[k], 1)) / 2 for k in keys}
        else:
            p = {k: torch.softmax(logits[k], 1) for k in keys}
        for k in keys:
            m = mask[k].bool()
            probs[k].append(p[k][m.to(device)].cpu().numpy())
            t = targets[k][m].to(device)
            losses += float(-(t * torch.log(p[k][m.to(device)].clamp_min(1e-12))).sum())
            count += float(m.sum())
    probs = {k: np.concatenate(v) if v else np.zeros((0, 1)) for k, v in probs.items()}
    return probs, losses / max(count, 1.0)


def marks_by_key(ds: CropDataset, keys: list[str]) -> dict[str, list[str]]:
    return {k: [s.marks[k] for s in ds.samples if k in s.marks] for k in keys}


def plot_confusions(run: Path, report: dict) -> None:
    """confusion_<key>.png per key of a validation report (per-epoch curves: the engine's results.png)."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for key, r in report.get("keys", {}).items():
        cm = np.asarray(r["confusion_matrix"], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        n = len(r["values"])
        fig, ax = plt.subplots(figsize=(2 + 0.45 * n, 1.5 + 0.45 * n))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), r["values"], rotation=90, fontsize=7)
        ax.set_yticks(range(n), r["values"], fontsize=7)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{key}: accuracy {r['accuracy']:.3f}", fontsize=9)
        fig.tight_layout()
        fig.savefig(run / f"confusion_{key.replace('/', '_')}.png", dpi=100)
        plt.close(fig)
