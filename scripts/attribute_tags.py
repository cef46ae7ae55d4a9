"""A tag CSV (``image,tags``) from a FashionAI attribute CSV: one attribute key's value becomes the photo's tag.

Attribute labels name one garment of a photo (cad's ``category``: the person's outer upper-body garment) and are
silent on the rest, so the tags it writes are *partial*: the mapping must say ``complete: false`` for them
(:mod:`fashion2stage.formats.tags`), and the teacher's confident boxes of other types are kept, not dropped
(:mod:`fashion2stage.weak_labels`). Each tag is ``PREFIX + value`` (``cad_outerwear``), so the tags cannot be
mistaken for a complete tag set's names in a shared mapping (``configs/fashion-bench-tags.yaml`` maps both).

The CSV is written to ``--out`` beside a link to the attribute CSV's folder, named as that folder (a tag CSV's
image paths are relative to its own folder), so the dataset is referenced, never copied. Photos without a row for the
key (annotators disagreed) get no tag; the tag reader keeps them, and the teacher step leaves them out.

    python scripts/attribute_tags.py ../shared/data/fashion-bench/cad/labels_train.csv --key category \\
        --prefix cad_ --out runs/cad_tags
    # -> runs/cad_tags/tags_labels_train.csv (rows cad/images/000003.jpg,cad_outerwear), runs/cad_tags/cad -> .../cad
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fashion2stage.errors import DataError  # noqa: E402
from fashion2stage.formats.fashionai import read_attribute_csv  # noqa: E402
from fashion2stage.formats.tags import HEADER  # noqa: E402
from fashion2stage.io import write_text_atomic  # noqa: E402


def attribute_tags(labels_csv: Path, key: str, prefix: str, out: Path) -> Path:
    """Write ``out/tags_<stem>.csv`` and the link ``out/<the CSV's folder name>``; return the CSV's path."""
    ds = read_attribute_csv(labels_csv)
    if key not in ds.labels.attributes:
        raise DataError(labels_csv, f"no attribute key {key!r} (keys: {', '.join(ds.labels.attributes)})")
    values = ds.labels.attributes[key]
    spaced = [v for v in values if len((prefix + v).split()) != 1]
    if spaced:  # tags are space-separated: such a value would read back as two tags
        raise DataError(labels_csv, f"{key} value {spaced[0]!r} with prefix {prefix!r} is not one word: a tag "
                                    "cannot hold a space")
    rows = []
    for r in ds.records:
        marks = r.attributes.get(key)
        tag = prefix + values[marks.index("y")] if marks else ""
        rows.append((f"{ds.root.name}/{r.file}", tag))
    out.mkdir(parents=True, exist_ok=True)
    link, target = out / ds.root.name, os.path.relpath(ds.root, out)
    if link.is_symlink() and os.readlink(link) != target:
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    path = out / f"tags_{labels_csv.stem}.csv"
    write_text_atomic(path, buf.getvalue())
    print(f"{path}: {len(rows)} photos, {sum(1 for _, t in rows if t)} tagged by {key!r}")
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("labels", type=Path, help="FashionAI attribute CSV (path,key,marks; paths relative to it)")
    ap.add_argument("--key", required=True, help="the attribute key whose value is the tag (e.g. category)")
    ap.add_argument("--prefix", default="", help="put before each value (e.g. cad_)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the tag CSV and the link to the data")
    args = ap.parse_args(argv)
    try:
        attribute_tags(args.labels, args.key, args.prefix, args.out)
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
