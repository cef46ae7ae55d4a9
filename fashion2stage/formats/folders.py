"""Class-folder datasets (``<root>/<class>/<image>``, the torchvision ``ImageFolder`` / ultralytics classify layout)
with a user-written mapping file that says what each class means for this project.

The mapping file (YAML or JSON)::

    # products.yaml
    classes:
      t-shirt:    {type: blouse, attributes: {fine_category: t-shirt, sleeve_length: short_sleeves}}
      longsleeve: {type: blouse, attributes: {sleeve_length: long_sleeves}}
      pants:      {type: trousers, attributes: {fine_category: pants}}
      hat:        {type: none}        # not a garment of the taxonomy: its photos must give no garment

A photo of a class shows ONE item and carries no box: it becomes an :class:`ImageRecord` with ``image_class``
set, ``item_type`` the class's garment type (``None`` for "no garment") and image-level attribute marks (one ``y``
at the named value). Boxes for such photos come later (:mod:`fashion2stage.pseudo_boxes`). Every class folder must
be named in the mapping, so a typo cannot silently drop a class; a mapping may name classes a folder lacks (one
mapping serves a dataset split into several folders).
"""
from __future__ import annotations

import json
from pathlib import Path

from fashion2stage import taxonomy
from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, ImageRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NO_GARMENT = ("none", "no_garment", "background")  # spellings of "this class is not a garment"


def _line_of(text: str, key: str) -> int | None:
    """Line number of the first line that names ``key`` as a mapping key (for error messages)."""
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().strip('"').strip("'")
        if stripped.startswith(f"{key}:") or stripped.startswith(f'{key}":') or f'"{key}":' in line:
            return i
    return None


def load_mapping(path: str | Path) -> tuple[str, dict]:
    """The text of a mapping file and its parsed top level (a dict with a non-empty ``classes:`` section)."""
    import yaml  # noqa: PLC0415  (pyyaml comes with ultralytics)

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read class mapping: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise DataError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                              f"{str(e).splitlines()[0]}", None if line is None else line + 1) from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict) or not data["classes"]:
        raise DataError(path, "expected a mapping with a non-empty 'classes:' section {class: {type: ..., attributes: ...}}")
    return text, data


def read_class_mapping(path: str | Path, labels: LabelSet | None = None,
                       fields: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{class: {"type": str | None, "attributes": {key: value}}}`` from a mapping file, checked against
    ``labels`` (default: the FashionAI taxonomy's garment types; attribute keys/values are checked when given).
    ``fields``: further per-class fields the caller's format allows; given ones are copied as they are."""
    path = Path(path)
    text, data = load_mapping(path)
    types = labels.garment_types if labels else list(taxonomy.GARMENT_TYPES)
    out = {}
    for name, spec in data["classes"].items():
        line = _line_of(text, str(name))
        if isinstance(spec, str) or spec is None:
            spec = {"type": spec}
        if not isinstance(spec, dict) or "type" not in spec:
            raise DataError(path, f"class {name!r}: expected {{type: <garment type or none>, attributes: {{...}}}}", line)
        unknown = set(spec) - {"type", "attributes", *fields}
        if unknown:
            raise DataError(path, f"class {name!r}: unknown field(s) {sorted(unknown)} (known: "
                                  f"{', '.join(['type', 'attributes', *fields])})", line)
        t = taxonomy.canonical_name(spec["type"]) if isinstance(spec["type"], str) else spec["type"]
        if t is None or (isinstance(t, str) and t.lower() in NO_GARMENT):
            t = None
        elif not isinstance(t, str) or t not in types:
            raise DataError(path, f"class {name!r}: type {t!r} is not a garment type {types} nor 'none'", line)
        attrs = spec.get("attributes") or {}
        if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise DataError(path, f"class {name!r}: attributes must map keys to value names", line)
        attrs = {k: taxonomy.canonical_name(v) for k, v in attrs.items()}
        if t is None and attrs:
            raise DataError(path, f"class {name!r}: a 'none' class cannot carry attributes", line)
        if labels is not None and labels.attributes:
            for k, v in attrs.items():
                if k not in labels.attributes:
                    raise DataError(path, f"class {name!r}: unknown attribute key {k!r} "
                                          f"(known: {', '.join(labels.attributes)})", line)
                if v not in labels.attributes[k]:
                    raise DataError(path, f"class {name!r}: {k} has no value {v!r} "
                                          f"(values: {', '.join(labels.attributes[k])})", line)
        out[str(name)] = {"type": t, "attributes": dict(attrs), **{f: spec[f] for f in fields if f in spec}}
    return out


def read_class_folders(root: str | Path, mapping: str | Path, labels: LabelSet | None = None) -> Dataset:
    """One record per image under ``root/<class>/`` (sorted), labelled by the mapping file."""
    root, mapping = Path(root), Path(mapping)
    if not root.is_dir():
        raise DataError(root, "class-folder dataset: no such folder")
    classes = read_class_mapping(mapping, labels)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(root, "no class folders (expected <root>/<class>/<image>)")
    unmapped = [f for f in folders if f not in classes]
    if unmapped:
        raise DataError(mapping, f"class folder(s) {unmapped} under {root} are not in the mapping")
    out_labels = labels or LabelSet(garment_types=list(taxonomy.GARMENT_TYPES))
    records = []
    for c in folders:
        spec = classes[c]
        marks = {}
        for k, v in spec["attributes"].items():  # marks only in the label set's values (none without one)
            values = out_labels.attributes.get(k)
            if values is not None and v in values:
                marks[k] = "".join("y" if x == v else "n" for x in values)
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        for p in files:
            records.append(ImageRecord(file=p.relative_to(root).as_posix(), root=root, attributes=dict(marks),
                                       image_class=c, item_type=spec["type"]))
    if not records:
        raise DataError(root, "class folders hold no images")
    return Dataset(root=root, records=records, labels=out_labels, source=str(root),
                   classes={c: classes[c] for c in folders})
