"""Built-in label sets: FashionAI garment types, attribute keys, keypoints; the DeepFashion 8-landmark layout.

These are defaults. A dataset's own label set (``cad/attributes.json``, a COCO file's ``categories`` and
``attributes``) always wins and is saved with every run (see :class:`fashion2stage.labels.LabelSet`).
"""
from __future__ import annotations

GARMENT_TYPES: tuple[str, ...] = ("blouse", "outwear", "dress", "skirt", "trousers")

# One spelling per name: FashionAI's garment type is "outwear", and the Clothing Attribute Dataset's category value
# "outerwear" means the same thing. Every name read from a label set or a class mapping goes through
# :func:`canonical_name`, so outputs say "outwear" for both and older files that say "outerwear" still read.
SPELLINGS: dict[str, str] = {"outerwear": "outwear"}


def canonical_name(name: str) -> str:
    """The one spelling of a garment type or attribute value (:data:`SPELLINGS`); other names unchanged."""
    return SPELLINGS.get(name, name)


# The 8 FashionAI attribute keys; each value list begins with "Invisible" (METRICS.md).
FASHIONAI_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "skirt_length": ("Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length", "Floor Length"),
    "coat_length": ("Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length",
                    "Knee Length", "Midi Length", "Ankle&Floor Length"),
    "collar_design": ("Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"),
    "lapel_design": ("Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"),
    "neck_design": ("Invisible", "Turtle Neck", "Ruffle Semi-High Collar", "Low Turtle Neck", "Draped Collar"),
    "neckline_design": ("Invisible", "Strapless Neck", "Deep V Neckline", "Straight Neck", "V Neckline",
                        "Square Neckline", "Off Shoulder", "Round Neckline", "Sweat Heart Neck",
                        "One Shoulder Neckline"),
    "pant_length": ("Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length"),
    "sleeve_length": ("Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves", "Elbow Sleeves", "3/4 Sleeves",
                      "Wrist Length", "Long Sleeves", "Extra Long Sleeves"),
}

_UPPER = ("blouse", "outwear", "dress")
# Which garment types carry each key: the heads for a key only ever see crops of these types.
FASHIONAI_ATTRIBUTE_TYPES: dict[str, tuple[str, ...]] = {
    "skirt_length": ("skirt", "dress"),
    "coat_length": ("blouse", "outwear"),
    "collar_design": _UPPER,
    "lapel_design": ("blouse", "outwear"),
    "neck_design": _UPPER,
    "neckline_design": _UPPER,
    "pant_length": ("trousers",),
    "sleeve_length": _UPPER,
}

# The 24 FashionAI keypoints, in the column order of the FashionAI keypoint CSV.
FASHIONAI_KEYPOINTS: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right", "waistline_left", "waistline_right",
    "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
    "top_hem_left", "top_hem_right", "waistband_left", "waistband_right",
    "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)

# Per-type subsets (as in the public FashionAI keypoint solutions, e.g. gathierry's src/config.py).
FASHIONAI_KEYPOINTS_PER_TYPE: dict[str, tuple[str, ...]] = {
    "blouse": ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
               "armpit_left", "armpit_right", "top_hem_left", "top_hem_right",
               "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out"),
    "outwear": ("neckline_left", "neckline_right", "shoulder_left", "shoulder_right",
                "armpit_left", "armpit_right", "waistline_left", "waistline_right",
                "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
                "top_hem_left", "top_hem_right"),
    "dress": ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
              "armpit_left", "armpit_right", "waistline_left", "waistline_right",
              "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
              "hemline_left", "hemline_right"),
    "skirt": ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
    "trousers": ("waistband_left", "waistband_right", "crotch",
                 "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out"),
}

# The pair of points whose distance normalises the FashionAI NE, per garment type.
FASHIONAI_NE_NORMALISER: dict[str, tuple[str, str]] = {
    "blouse": ("armpit_left", "armpit_right"),
    "outwear": ("armpit_left", "armpit_right"),
    "dress": ("armpit_left", "armpit_right"),
    "skirt": ("waistband_left", "waistband_right"),
    "trousers": ("waistband_left", "waistband_right"),
}

def mirror_name(name: str) -> str:
    """The name of the point a horizontal flip turns ``name`` into ("cuff_left_in" -> "cuff_right_in")."""
    parts = name.split("_")
    swapped = ["right" if p == "left" else "left" if p == "right" else p for p in parts]
    return "_".join(swapped)


def flip_pairs(names: tuple[str, ...] | list[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, of points that swap under a horizontal flip; unpaired points map to themselves."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        j = index.get(mirror_name(n))
        if j is not None and i < j:
            pairs.append((i, j))
    return pairs


def flip_permutation(names: tuple[str, ...] | list[str]) -> list[int]:
    """perm[i] = index of the point that lands on point i after a horizontal flip."""
    perm = list(range(len(names)))
    for i, j in flip_pairs(names):
        perm[i], perm[j] = j, i
    return perm
