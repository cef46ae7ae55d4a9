"""Compare two predictions.jsonl files within float tolerance: garments matched by type and IoU, not position."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fashion2stage.geometry import box_iou

BOX_PX = 3.0  # box corners and landmarks, in pixels of the photo
SCORE = 0.03  # scores and probabilities
MATCH_IOU = 0.9


def read_lines(path: Path) -> dict[str, dict]:
    return {rec["image"]: rec for rec in map(json.loads, Path(path).read_text().splitlines())}


def _attributes_differ(a: dict, b: dict, where: str) -> list[str]:
    out = []
    if set(a) != set(b):
        return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
    for k, x in a.items():
        y = b[k]
        px, py = np.asarray(x["probs"]), np.asarray(y["probs"])
        if x["names"] != y["names"] or px.shape != py.shape or np.abs(px - py).max() > SCORE:
            out.append(f"{where} {k}: probs {x['probs']} != {y['probs']}")
        if x.get("garment") != y.get("garment"):
            out.append(f"{where} {k}: answered by garment {x.get('garment')} != {y.get('garment')}")
    return out


def differences(expected: dict[str, dict], got: dict[str, dict]) -> list[str]:
    """Every difference beyond tolerance, one line each (empty: the same predictions)."""
    if set(expected) != set(got):
        return [f"images {sorted(expected)} != {sorted(got)}"]
    out = []
    for name, e in expected.items():
        g = got[name]
        for key in ("width", "height", "error"):
            if e.get(key) != g.get(key):
                out.append(f"{name} {key}: {e.get(key)} != {g.get(key)}")
        ek, gk = e.get("photo_kind") or {}, g.get("photo_kind") or {}
        if (ek.get("value"), ek.get("by")) != (gk.get("value"), gk.get("by")) or (
                (ek.get("p_single") is None) != (gk.get("p_single") is None)) or (
                ek.get("p_single") is not None and abs(ek["p_single"] - gk["p_single"]) > SCORE):
            out.append(f"{name} photo_kind: {ek} != {gk}")
        eg, gg = e.get("garments", []), g.get("garments", [])
        if len(eg) != len(gg):
            out.append(f"{name}: {len(eg)} garments != {len(gg)}")
            continue
        if not eg:
            continue
        iou = box_iou(np.array([x["box"] for x in eg], float), np.array([x["box"] for x in gg], float))
        index = {}  # expected garment -> got garment
        for i, a in enumerate(eg):
            j = int(np.argmax(np.where([b["type"] == a["type"] for b in gg], iou[i], -1)))
            if gg[j]["type"] != a["type"] or iou[i, j] < MATCH_IOU:
                out.append(f"{name}: no match for {a['type']} {a['box']}")
                continue
            index[i] = j
            b = gg[j]
            where = f"{name} {a['type']} {a['box']}"
            if np.abs(np.subtract(a["box"], b["box"])).max() > BOX_PX or abs(a["score"] - b["score"]) > SCORE:
                out.append(f"{where}: box/score {a['box']} {a['score']} != {b['box']} {b['score']}")
            out += _attributes_differ(a.get("attributes", {}), b.get("attributes", {}), where)
            ka, kb = a.get("keypoints", {}), b.get("keypoints", {})
            if set(ka) != set(kb):
                out.append(f"{where}: landmarks {sorted(ka)} != {sorted(kb)}")
            elif ka and np.abs(np.array([ka[k][:2] for k in ka]) - np.array([kb[k][:2] for k in ka])).max() > BOX_PX:
                out.append(f"{where}: landmarks {ka} != {kb}")
        image_level = {k: dict(v, garment=index.get(v["garment"], v["garment"]) if v.get("garment") is not None
                               else None) for k, v in e.get("attributes", {}).items()}
        out += _attributes_differ(image_level, g.get("attributes", {}), f"{name} image-level")
    return out
