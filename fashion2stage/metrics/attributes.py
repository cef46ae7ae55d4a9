"""FashionAI attribute metrics (docs/METRICS.md): per-key AP, BasicPrecision, mAP, and soft targets.

Inputs per attribute key: ``probs`` (N, V) — one row per image labelled for the key, columns in the label set's
value order — and ``marks``, N FashionAI mark strings of length V (``y`` the true value, ``n`` not, ``m`` maybe).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, top_k_accuracy_score


def _outcomes(probs, marks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The confidence (N,) of each argmax prediction and its mark (N,) ``'y'``, ``'n'`` or ``'m'``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(marks):
        raise ValueError(f"probs shape {p.shape} does not match {len(marks)} mark strings")
    if any(len(m) != p.shape[1] for m in marks):
        raise ValueError(f"every mark string must have {p.shape[1]} characters (one per value)")
    pred = p.argmax(axis=1)
    return p.max(axis=1), np.array([m[i] for m, i in zip(marks, pred)], dtype="<U1")


def fashionai_ap(probs, marks: list[str]) -> float:
    """FashionAI AP for one key: mean of precision@k over the positions whose prediction is not an ``m`` value.

    Images sorted by confidence (max prob), descending; precision@k = correct / (correct + wrong) among the first k
    (skipped ``m`` predictions count as neither). Equal confidences form one threshold: every member of a tie block
    gets the precision at the end of the block, so the result does not depend on input order (METRICS.md: "the mean
    of P(T) over thresholds T"); without ties this is the plain sorted walk. NaN when no prediction is scored (none
    given, or every one lands on an ``m`` value).
    """
    conf, outcome = _outcomes(probs, marks)
    order = np.argsort(-conf, kind="stable")
    conf, outcome = conf[order], outcome[order]
    scored = outcome != "m"
    if not scored.any():
        return float("nan")
    tp = np.cumsum(outcome == "y")
    fp = np.cumsum(outcome == "n")
    block_end = np.searchsorted(-conf, -conf, side="right") - 1  # last index of each position's tie block
    precision = tp[block_end] / (tp[block_end] + fp[block_end])
    return float(precision[scored].mean())


def basic_precision(probs, marks: list[str]) -> float:
    """Precision over all images (threshold 0): correct / (correct + wrong), ``m`` predictions ignored; NaN if none."""
    _, outcome = _outcomes(probs, marks)
    scored = (outcome == "y").sum() + (outcome == "n").sum()
    return float((outcome == "y").sum() / scored) if scored else float("nan")


def soft_targets(marks: str) -> np.ndarray:
    """Training target (V,) for a mark string, the top-10 FashionAI recipe (METRICS.md).

    No ``m``: one-hot on ``y``. One ``m``: y .8, m .2. Two: y .7, each m .15. Three: y .7, each m .1.
    More: y .6, the m's share .4 equally. ``n`` values get 0; the row sums to 1.
    """
    if marks.count("y") != 1 or set(marks) - set("ynm"):
        raise ValueError(f"marks {marks!r} must be y/n/m with exactly one 'y'")
    m = [i for i, c in enumerate(marks) if c == "m"]
    recipe = {0: (1.0, 0.0), 1: (0.8, 0.2), 2: (0.7, 0.15), 3: (0.7, 0.1)}
    y_share, m_each = recipe.get(len(m), (0.6, 0.4 / max(len(m), 1)))
    t = np.zeros(len(marks))
    t[marks.index("y")] = y_share
    t[m] = m_each
    return t


def _most_confused(cm: np.ndarray, names: list[str], top: int = 5) -> list[dict]:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off))]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [{"true": names[i], "predicted": names[j], "count": c} for c, i, j in pairs[:top]]


def key_report(probs, marks: list[str], value_names: list[str]) -> dict:
    """One key's numbers: n, accuracy (argmax == the ``y`` value), AP, BasicPrecision, confusion matrix (rows =
    true value, columns = predicted, in ``value_names`` order), most-confused pairs, and top-1/3/5 accuracy for keys
    with at least 5 values (top-k with k >= V is 1 by definition)."""
    p = np.asarray(probs, dtype=np.float64)
    _outcomes(p, marks)  # shape checks
    n_values = len(value_names)
    if p.shape[1] != n_values:
        raise ValueError(f"probs have {p.shape[1]} columns for {n_values} value names")
    true = np.array([m.index("y") for m in marks], dtype=int)
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=int)
    cm = confusion_matrix(true, pred, labels=list(range(n_values))) if len(p) else np.zeros((n_values,) * 2, int)
    out = {"n": len(marks), "accuracy": float((pred == true).mean()) if len(p) else float("nan"),
           "ap": fashionai_ap(p, marks), "basic_precision": basic_precision(p, marks),
           "values": list(value_names), "confusion_matrix": cm.tolist(),
           "most_confused": _most_confused(cm, list(value_names))}
    if n_values >= 5 and len(p):
        for k in (1, 3, 5):
            out[f"top{k}"] = (1.0 if k >= n_values else
                              float(top_k_accuracy_score(true, p, k=k, labels=list(range(n_values)))))
    return out


def attribute_report(probs_by_key: dict, marks_by_key: dict[str, list[str]],
                     value_names_by_key: dict[str, list[str]]) -> dict:
    """Per-key :func:`key_report` under ``"keys"``, plus ``"mAP"`` (mean AP over keys with a defined AP) and
    ``"mean_accuracy"`` (mean over keys with at least one image). Keys are those of ``probs_by_key``."""
    keys = {k: key_report(probs_by_key[k], marks_by_key[k], value_names_by_key[k]) for k in probs_by_key}
    aps = [r["ap"] for r in keys.values() if not np.isnan(r["ap"])]
    accs = [r["accuracy"] for r in keys.values() if r["n"]]
    return {"keys": keys, "mAP": float(np.mean(aps)) if aps else float("nan"),
            "mean_accuracy": float(np.mean(accs)) if accs else float("nan")}
