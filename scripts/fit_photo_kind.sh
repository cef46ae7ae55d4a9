#!/usr/bin/env bash
# Fit the photo-kind head (classifiers/photo_kind.py) on an attribute run, for the detector that runs before it:
# step 7's second half of scripts/train_default_model.sh, and the step to rerun when the bundle's detector or
# attribute model changes (the head judges a photo by the crop of that detector's top box).
#
#   bash scripts/fit_photo_kind.sh CLASSIFIER DETECTOR OUT [DATA]     # DATA: ../shared/data/fashion-bench
#
# Fitted on train splits only: photos of one item and no person (products/train, landmarks train) against photos of
# people (ccp, cad and ccp_tags train); the threshold is chosen on the val splits of the same five sources, which are
# never fitted on. A sample of each source (PHOTOS, VAL_PHOTOS; the environment may change them): each photo costs
# one detector and one backbone pass. Features are cached per photo and models in the one cache (fashion2stage/
# cache.py; CACHE names another folder): a rerun with the same ones only refits.
# On the shipped bundle (then rebuild it with the new attribute run; detector and keypoints stay as they are):
#   bash scripts/fit_photo_kind.sh fashion2stage/default_model/attributes fashion2stage/default_model/detector runs/kind/attributes
#   python scripts/make_default_bundle.py --detector fashion2stage/default_model/detector \
#       --attributes runs/kind/attributes --keypoints fashion2stage/default_model/keypoints
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: bash scripts/fit_photo_kind.sh CLASSIFIER DETECTOR OUT [DATA]" >&2; exit 2; }
B=${4:-../shared/data/fashion-bench}
fashion2stage photo-kind-train --classifier "$1" --detector "$2" --out "$3" \
    --single "$B/products/train" --single "$B/landmarks/annotations/keypoints_train.json" \
    --multi "$B/ccp/annotations/instances_train.json" --multi "$B/cad/labels_train.csv" \
    --multi "$B/ccp_tags/tags_train.csv" \
    --val-single "$B/products/val" --val-single "$B/landmarks/annotations/keypoints_val.json" \
    --val-multi "$B/ccp/annotations/instances_val.json" --val-multi "$B/cad/labels_val.csv" \
    --val-multi "$B/ccp_tags/tags_val.csv" \
    --max-photos "${PHOTOS:-60}" --max-val-photos "${VAL_PHOTOS:-60}" --threads "${THREADS:-2}" \
    ${CACHE:+--cache "$CACHE"}
