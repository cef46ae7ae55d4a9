"""The label set a model is trained for: garment types, attribute keys and values, keypoint names.

It is built from the dataset (its file wins over the built-in FashionAI taxonomy), saved as ``labels.json`` in
every run folder, and read back by ``predict``, so value order (the order of ``probs``) never has to be remembered.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from fashion2stage import taxonomy
from fashion2stage.errors import DataError
from fashion2stage.jsonspec import from_json


@dataclass
class LabelSet:
    garment_types: list[str] = field(default_factory=list)
    # attribute key -> its values, in the order of the model's probabilities
    attributes: dict[str, list[str]] = field(default_factory=dict)
    # attribute key -> garment types that carry it; a key absent here is carried by every type
    attribute_types: dict[str, list[str]] = field(default_factory=dict)
    # the union keypoint set; a garment's keypoints array has one row per name
    keypoints: list[str] = field(default_factory=list)
    # garment type -> the subset of ``keypoints`` it has; a type absent here has all of them
    keypoints_per_type: dict[str, list[str]] = field(default_factory=dict)
    # garment type -> the two points whose distance normalises NE; a type absent here uses the box diagonal
    ne_normaliser: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Type and value names in their one spelling (taxonomy.canonical_name: "outerwear" reads as "outwear")."""
        def names(v: list[str]) -> list[str]:
            return [taxonomy.canonical_name(n) for n in v]
        self.garment_types = names(self.garment_types)
        self.attributes = {k: names(v) for k, v in self.attributes.items()}
        self.attribute_types = {k: names(v) for k, v in self.attribute_types.items()}
        self.keypoints_per_type = {taxonomy.canonical_name(t): list(v) for t, v in self.keypoints_per_type.items()}
        self.ne_normaliser = {taxonomy.canonical_name(t): list(v) for t, v in self.ne_normaliser.items()}

    @classmethod
    def fashionai(cls) -> "LabelSet":
        """The built-in FashionAI label set: 5 types, 8 attribute keys, 24 keypoints with per-type subsets."""
        return cls(
            garment_types=list(taxonomy.GARMENT_TYPES),
            attributes={k: list(v) for k, v in taxonomy.FASHIONAI_ATTRIBUTES.items()},
            attribute_types={k: list(v) for k, v in taxonomy.FASHIONAI_ATTRIBUTE_TYPES.items()},
            keypoints=list(taxonomy.FASHIONAI_KEYPOINTS),
            keypoints_per_type={k: list(v) for k, v in taxonomy.FASHIONAI_KEYPOINTS_PER_TYPE.items()},
            ne_normaliser={k: list(v) for k, v in taxonomy.FASHIONAI_NE_NORMALISER.items()},
        )

    def types_for_key(self, key: str) -> list[str]:
        return list(self.attribute_types.get(key, self.garment_types))

    def keys_for_type(self, garment_type: str) -> list[str]:
        """Attribute keys whose heads apply to a garment of this type."""
        return [k for k in self.attributes if garment_type in self.types_for_key(k)]

    def keypoint_indices(self, garment_type: str) -> list[int]:
        """Indices into ``keypoints`` of the points this garment type has."""
        names = self.keypoints_per_type.get(garment_type)
        if names is None:
            return list(range(len(self.keypoints)))
        index = {n: i for i, n in enumerate(self.keypoints)}
        return [index[n] for n in names]

    def flip_permutation(self) -> list[int]:
        return list(_flip_permutation(tuple(self.keypoints)))

    def merged(self, other: "LabelSet") -> "LabelSet":
        """Union of two label sets (for one model trained on several datasets). Shared keys must agree on values."""
        out = LabelSet(**json.loads(json.dumps(asdict(self))))
        for t in other.garment_types:
            if t not in out.garment_types:
                out.garment_types.append(t)
        for k, values in other.attributes.items():
            if k in out.attributes and out.attributes[k] != values:
                raise ValueError(f"attribute {k!r} has different values in the two label sets: "
                                 f"{out.attributes[k]} vs {values}")
            out.attributes[k] = list(values)
        out.attribute_types.update({k: list(v) for k, v in other.attribute_types.items()})
        for n in other.keypoints:
            if n not in out.keypoints:
                out.keypoints.append(n)
        out.keypoints_per_type.update({k: list(v) for k, v in other.keypoints_per_type.items()})
        out.ne_normaliser.update({k: list(v) for k, v in other.ne_normaliser.items()})
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def answering_garment(self, garments: list, key: str) -> int | None:
        """Which garment answers an image-level question: the index in ``garments`` (anything with ``type`` and
        ``score``) of the highest-scoring garment whose type carries ``key`` (``attribute_types``), or None: no such
        garment, the whole image answers. The one rule of ``predict`` (docs/OUTPUT.md) and of training on labels
        without boxes (classifiers/attribute_data.py)."""
        types = self.types_for_key(key)
        best, best_score = None, float("-inf")
        for i, g in enumerate(garments):
            if g.type in types and g.score > best_score:
                best, best_score = i, g.score
        return best

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def save(self, path: str | Path) -> None:
        """Write ``labels.json``; a set :meth:`load` would refuse is refused here (a ValueError), not written."""
        from fashion2stage.io import write_json_atomic  # noqa: PLC0415  (keeps this module import-light)
        problem = self.problem()
        if problem:
            raise ValueError(f"{path}: not a label set: {problem}")
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LabelSet":
        """Read ``labels.json``: every field a list of distinct names or an object of such lists, the names of one
        field known to the others (an attribute's garment types are garment types, ...); an unknown key, or any
        other problem, is one DataError naming the file and the field."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, f"cannot read label set: invalid JSON: {e.msg}", e.lineno) from None
        except OSError as e:
            raise DataError(path, f"cannot read label set: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise DataError(path, "cannot read label set: not UTF-8 text") from None
        if not isinstance(data, dict):
            raise DataError(path, f"not a label set: expected a JSON object, found {type(data).__name__}")
        labels = from_json(cls, data, path)
        problem = labels.problem()
        if problem:
            raise DataError(path, f"not a label set: {problem}")
        return labels

    def problem(self) -> str | None:
        """Why this is not a usable label set (one line naming the field), or None."""
        if not self.garment_types and not self.attributes and not self.keypoints:
            return "no garment types, attributes or keypoints"
        known = {"garment types": self.garment_types, "attribute keys": list(self.attributes),
                 "keypoints": self.keypoints}
        lists = [("garment_types", self.garment_types, None), ("keypoints", self.keypoints, None)]
        lists += [(f"attributes.{k}", v, None) for k, v in self.attributes.items()]
        lists += [(f"attribute_types.{k}", v, "garment types") for k, v in self.attribute_types.items()]
        lists += [(f"keypoints_per_type.{k}", v, "keypoints") for k, v in self.keypoints_per_type.items()]
        lists += [(f"ne_normaliser.{k}", v, "keypoints") for k, v in self.ne_normaliser.items()]
        for name, names, among in lists:
            bad = next((n for n in names if not n.strip()), None)
            if bad is not None:
                return f"field {name!r} holds an empty name"
            twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
            if twice is not None:
                return f"field {name!r} names {twice!r} twice; names must be distinct"
            unknown = next((n for n in names if among and n not in known[among]), None)
            if unknown is not None:
                return f"field {name!r} names {unknown!r}, which is not among the {among}"
        for name, keys, among in (("attribute_types", self.attribute_types, "attribute keys"),
                                  ("keypoints_per_type", self.keypoints_per_type, "garment types"),
                                  ("ne_normaliser", self.ne_normaliser, "garment types")):
            unknown = next((k for k in keys if k not in known[among]), None)
            if unknown is not None:
                return f"field {name!r} has an entry for {unknown!r}, which is not among the {among}"
        empty = next((k for k, v in self.attributes.items() if not v), None)
        if empty is not None:
            return f"field 'attributes.{empty}' has no values"
        pair = next((k for k, v in self.ne_normaliser.items() if len(v) != 2), None)
        if pair is not None:
            return f"field 'ne_normaliser.{pair}' must name two keypoints"
        return None


@lru_cache(maxsize=None)
def _flip_permutation(keypoints: tuple[str, ...]) -> tuple[int, ...]:
    """Once per keypoint set, not per image: the keypoint model flips every batch."""
    return tuple(taxonomy.flip_permutation(keypoints))
