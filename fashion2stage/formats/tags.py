"""Image-level tag CSVs (``image,tags`` with a header, tags space-separated): which items a photo shows, not where.

    image,tags
    images/1007.jpg,bag boots coat pants ring sunglasses sweater

What a tag means comes from a mapping file in the class-folder convention (:mod:`fashion2stage.formats.folders`),
plus one rule for tags it does not name::

    # tags.yaml
    unmapped: error        # or "ignore": tags not listed below are dropped, counted in one warning line
    complete: true         # optional, default true: a photo's tags name every garment type it shows
    classes:
      coat:  {type: outwear, attributes: {fine_category: coat}}
      jeans: {type: trousers, attributes: {fine_category: jeans}}
      bag:   {type: none}  # not a garment of the taxonomy: says nothing about garments
      catalogue_dress: {type: dress, complete: false}  # names one garment; others may be shown untagged

**Complete and partial tags.** Street tags list what a photo shows (``complete: true``): a type no tag names is
not there, and a teacher's box of it is a negative. A catalogue category or an attribute label names one garment
(the product, the outer layer) and is silent on the rest (``complete: false``, for the whole file at the top or
per tag): a photo with any such tag is *partially tagged*, and a type its tags do not name is unknown, never
absent (:mod:`fashion2stage.weak_labels` keeps the teacher's confident boxes of it; tag scores do not count it).

A photo becomes an :class:`ImageRecord` with no garments and ``tags`` = its mapped tags in file order; the
dataset's ``tags`` holds the mapping. Boxes come later from a teacher detector (:mod:`fashion2stage.weak_labels`).
A malformed row (wrong column count, empty or escaping image path, a photo listed twice) and, under
``unmapped: error``, an unknown tag raise :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from fashion2stage import taxonomy
from fashion2stage.errors import DataError
from fashion2stage.formats.fashionai import _rows
from fashion2stage.formats.folders import _line_of, load_mapping, read_class_mapping
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, ImageRecord, safe_relpath

HEADER = ["image", "tags"]
UNMAPPED_RULES = ("error", "ignore")


def read_tag_mapping(path: str | Path, labels: LabelSet | None = None) -> tuple[dict[str, dict], str]:
    """``({tag: {"type", "attributes"}}, unmapped rule)`` of a tag mapping file. The ``unmapped:`` key is required:
    a file that does not say what happens to unknown tags is refused."""
    text, data = load_mapping(path)
    rule = data.get("unmapped")
    if rule not in UNMAPPED_RULES:
        raise DataError(path, f"a tag mapping needs a top-level 'unmapped:' rule, one of {', '.join(UNMAPPED_RULES)} "
                              f"(what to do with a tag it does not list), got {rule!r}", _line_of(text, "unmapped"))
    complete = data.get("complete", True)
    if not isinstance(complete, bool):
        raise DataError(path, f"'complete:' must be true or false, got {complete!r}", _line_of(text, "complete"))
    tags = read_class_mapping(path, labels, fields=("complete",))
    for name, spec in tags.items():
        spec.setdefault("complete", complete)
        if not isinstance(spec["complete"], bool):
            raise DataError(path, f"class {name!r}: 'complete' must be true or false, got {spec['complete']!r}",
                            _line_of(text, name))
    return tags, rule


def is_tag_csv(path: str | Path) -> bool:
    """True when the file's first line is the ``image,tags`` header."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return [c.strip().lower() for c in first.split(",")] == HEADER


def read_tags(csv_path: str | Path, mapping: str | Path, labels: LabelSet | None = None,
              image_root: str | Path | None = None) -> Dataset:
    """One record per row, in file order; image paths relative to ``image_root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    tags, rule = read_tag_mapping(mapping, labels)
    rows = iter(_rows(csv_path))
    first = next(rows, None)
    if first is None or [c.lower() for c in first[1]] != HEADER:
        raise DataError(csv_path, f"expected the header line 'image,tags', got {','.join(first[1]) if first else 'nothing'!r}",
                        first[0] if first else None)
    records, seen, ignored = [], {}, Counter()
    for line, cells in rows:
        if len(cells) != 2:
            raise DataError(csv_path, f"expected 2 columns (image,tags), got {len(cells)}", line)
        file = safe_relpath(cells[0], csv_path, line)
        if file in seen:
            raise DataError(csv_path, f"{file} is listed twice (first on line {seen[file]})", line)
        seen[file] = line
        kept = []
        for tag in cells[1].split():
            if tag in tags:
                kept.append(tag)
            elif rule == "error":
                raise DataError(csv_path, f"tag {tag!r} is not in the mapping {mapping} (it says 'unmapped: error'; "
                                          "add the tag, as 'none' if it is no garment, or say 'unmapped: ignore')", line)
            else:
                ignored[tag] += 1
        records.append(ImageRecord(file=file, root=Path(image_root) if image_root else csv_path.parent, tags=kept))
    if not records:
        raise DataError(csv_path, "no photos")
    if ignored:
        warnings.warn(f"{csv_path}: {sum(ignored.values())} tag(s) not in {mapping} ignored ('unmapped: ignore'): "
                      + ", ".join(f"{t} x{n}" for t, n in ignored.most_common()), stacklevel=2)
    out_labels = labels or LabelSet(garment_types=list(taxonomy.GARMENT_TYPES))
    return Dataset(root=records[0].root, records=records, labels=out_labels, source=str(csv_path), tags=tags)


def tagged_types(record: ImageRecord, tags: dict[str, dict]) -> set[str]:
    """The garment types the photo's tags name (tags mapped to ``none`` name no type)."""
    return {tags[t]["type"] for t in record.tags or () if tags[t]["type"] is not None}


def fully_tagged(record: ImageRecord, tags: dict[str, dict]) -> bool:
    """True when the photo's tags name every garment type it shows: none of them is a ``complete: false`` tag.
    (A photo with no tag at all counts as complete; the callers decide what such a photo teaches.)"""
    return all(tags[t].get("complete", True) for t in record.tags or ())


def pinned_attributes(record: ImageRecord, tags: dict[str, dict], garment_type: str) -> dict[str, str]:
    """Attribute values the tags pin down for a garment of ``garment_type`` on this photo: for each key, the value
    when every tag of that type on the photo names the same one (``coat`` alone: fine category coat; ``coat jacket``:
    two outwear categories, so none)."""
    specs = [tags[t]["attributes"] for t in record.tags or () if tags[t]["type"] == garment_type]
    keys = set.intersection(*(set(s) for s in specs)) if specs else set()  # a tag silent on a key leaves it open
    return {k: specs[0][k] for k in sorted(keys) if len({s[k] for s in specs}) == 1}
