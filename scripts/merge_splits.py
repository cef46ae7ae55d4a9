"""Merge label files of several splits of one dataset into one, e.g. train + val for a final model.

    python scripts/merge_splits.py OUT.json A.json B.json     # COCO detection or keypoints json
    python scripts/merge_splits.py OUT.csv A.csv B.csv        # FashionAI label CSV

COCO: images keep their ids (an id used by two files with different file names is an error), annotations are
renumbered 1..N, ``categories`` and ``attributes`` must agree. CSV: rows are concatenated, exact duplicates
dropped. The inputs must share one image root: file names stay as they are. The output is written atomically.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from fashion2stage.errors import DataError
from fashion2stage.formats.coco import _load_json
from fashion2stage.io import write_text_atomic


def _read_coco(path: Path) -> dict:
    """The COCO file's top-level object; a one-line SystemExit naming the file when it is not one."""
    try:
        data = _load_json(path)
    except DataError as e:
        raise SystemExit(str(e)) from None
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise SystemExit(f"{path}: no {key!r} list; not a COCO detection or keypoints file")
    return data


def merge_coco(paths: list[Path]) -> dict:
    files = [_read_coco(path) for path in paths]
    first = files[0]
    out = {k: v for k, v in first.items() if k not in ("images", "annotations")}
    info = first.get("info", {})
    out["info"] = {**info, "description": f"{info.get('description', '')} "
                   f"(merged: {', '.join(p.name for p in paths)})".strip()}
    images: dict[int, dict] = {}
    annotations = []
    for path, data in zip(paths, files):
        for key in ("categories", "attributes"):
            if data.get(key) != first.get(key):
                raise SystemExit(f"{path}: its {key!r} differ from {paths[0]}'s; cannot merge")
        for image in data["images"]:
            seen = images.get(image["id"])
            if seen is not None and seen["file_name"] != image["file_name"]:
                raise SystemExit(f"{path}: image id {image['id']} is {image['file_name']!r} here and "
                                 f"{seen['file_name']!r} in an earlier file")
            images[image["id"]] = image
        annotations.extend(data["annotations"])
    out["images"] = sorted(images.values(), key=lambda im: im["id"])
    out["annotations"] = [{**a, "id": i} for i, a in enumerate(annotations, start=1)]
    return out


def merge_csv(paths: list[Path]) -> str:
    rows, seen = [], set()
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.reader(f):
                if row and tuple(row) not in seen:
                    seen.add(tuple(row))
                    rows.append(row)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    suffixes = {p.suffix.lower() for p in [args.out, *args.inputs]}
    if len(suffixes) != 1 or suffixes.pop() not in (".json", ".csv"):
        raise SystemExit("OUT and the inputs must all be .json (COCO) or all .csv (FashionAI labels)")
    for path in args.inputs:
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
    if args.out.suffix.lower() == ".json":
        merged = merge_coco(args.inputs)
        write_text_atomic(args.out, json.dumps(merged))
        print(f"{args.out}: {len(merged['images'])} images, {len(merged['annotations'])} annotations")
    else:
        text = merge_csv(args.inputs)
        write_text_atomic(args.out, text)
        print(f"{args.out}: {text.count(chr(10))} rows")


if __name__ == "__main__":
    main()
