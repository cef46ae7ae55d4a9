#!/usr/bin/env bash
# Rebuild fashion2stage/default_model/ from fashion-bench train + val: the recipe of the shipped bundle. One
# difference: the first of the shipped detector's 4 step-5 epochs had 3 sources (the hat and shoe photos came with
# the second); BENCHMARKS.md, "What the recipe costs", compares this script's step 5 with the shipped run.
#
#   bash scripts/train_default_model.sh [DATA] [WORK]     # DATA: ../shared/data/fashion-bench, WORK: runs/default
#
# Seven training steps in three phases, sized for 2 CPU cores (BENCHMARKS.md, "What the recipe costs"):
#   phase 1, two lanes side by side on one torch thread each (nothing in one lane waits for the other):
#     lane A: 1. the train-only detector -> 3. the attribute model (street)
#     lane B: 2. the train + val detector -> 5. that detector fine-tuned on street, held-flat and product photos
#   phase 2, on both threads: 6. the attribute model fine-tuned with product photos (needs 3 and 5)
#   phase 3, on both threads: 7. the garment check and the item-type head (needs 5 and 6), the photo-kind head,
#   4. the keypoint model on the final attribute model's backbone (needs 7), then the bundle
# A step whose run folder has metrics.json (written when training ends) is skipped; one with only last.pt
# (interrupted) continues with --resume. Each step's wall time is appended to WORK/logs/times.txt.
#
# The product domain (issue 10): step 5 fine-tunes the train + val detector on four sources at once, each drawn
# with an equal share of every epoch: ccp train + val boxes, the landmark photos' boxes (train), the garment photos
# of products/train on class-agnostic foreground boxes (their type from the class, configs/fashion-bench-products.yaml)
# and the hat and shoe photos of products/train as background images. products/val and landmarks/val stay held out.
#
# Why two detectors: the attribute model learns from detector crops of the boxless cad photos and from ground-truth
# boxes jittered the way the detector errs. Both come from the detector trained on train only, whose box errors on
# val are honest (held-out) measurements; the train + val detector has no held-out set to measure them on. The
# bundle ships the train + val detector (after step 5).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${1:-../shared/data/fashion-bench}")
W=$(realpath -m "${2:-runs/default}")
T=$W/data
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
mkdir -p "$T/ccp/annotations" "$T/cad" "$T/landmarks/annotations" "$W/logs"

# train + val label files beside links to the real images (never copies)
ln -sfn "$B/ccp/images" "$T/ccp/images"
ln -sfn "$B/cad/images" "$T/cad/images"
ln -sfn "$B/cad/attributes.json" "$T/cad/attributes.json"
ln -sfn "$B/landmarks/images" "$T/landmarks/images"
python scripts/merge_splits.py "$T/ccp/annotations/instances_trainval.json" "$B"/ccp/annotations/instances_{train,val}.json
python scripts/merge_splits.py "$T/cad/labels_trainval.csv" "$B"/cad/labels_{train,val}.csv
python scripts/merge_splits.py "$T/landmarks/annotations/keypoints_trainval.json" \
    "$B"/landmarks/annotations/keypoints_{train,val}.json

done_() { [ -f "$1/metrics.json" ]; }
resume() { if [ -f "$1/last.pt" ]; then echo --resume; fi; }
timed() {  # $1: step name, then the command: appends its wall time and the load average to $W/logs/times.txt
    local name=$1 t0=$SECONDS
    shift
    "$@"
    echo "$name: $((SECONDS - t0)) s wall, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$W/logs/times.txt"
}
detector() {  # $1: name, $2: training json
    done_ "$W/detect/$1" || fashion2stage detect-train --data "$2" --val "$B/ccp/annotations/instances_val.json" \
        --images "$B/ccp/images" --detector faster-rcnn --epochs 8 --batch 4 --image-size 416 --threads 1 \
        --project "$W/detect" --name "$1" $(resume "$W/detect/$1") >> "$W/logs/$1.log" 2>&1
}

# 3. the attribute model on street photos: ccp boxes jittered with the train-only detector's errors, and that
# detector's crops of the cad photos
attributes() {
    done_ "$W/attributes/attributes-trainval" || fashion2stage classify-train \
        --data "$T/ccp/annotations/instances_trainval.json" --data "$T/cad/labels_trainval.csv" \
        --val "$B/ccp/annotations/instances_val.json" --val "$B/cad/labels_val.csv" \
        --detector "$W/detect/detector-train" --key-types category=blouse,outwear,dress \
        --epochs 4 --image-size 192 --batch-size 32 --threads 1 \
        --project "$W/attributes" --name attributes-trainval $(resume "$W/attributes/attributes-trainval") \
        >> "$W/logs/attributes-trainval.log" 2>&1
}

# 4. the keypoint model (landmarks train + val) on the shipped attribute model's backbone: its stem and first 5
# blocks frozen and shared, so that predict runs them once per garment for both models (classifiers/crop_models.py);
# blocks 5-6 and the head (with the stride-16 and stride-8 maps: --lateral) learn. Crops are the attribute model's.
# It needs the last attribute step (7), so it runs after it.
keypoints() {
    done_ "$W/keypoints/keypoints-trainval" || fashion2stage keypoints-train \
        --data "$T/landmarks/annotations/keypoints_trainval.json" \
        --val "$B/landmarks/annotations/keypoints_val.json" --images "$B/landmarks/images" \
        --trunk "$W/attributes/attributes-kind" --trunk-blocks 5 --lateral \
        --epochs 30 --jitter default --threads 2 \
        --project "$W/keypoints" --name keypoints-trainval $(resume "$W/keypoints/keypoints-trainval") \
        >> "$W/logs/keypoints-trainval.log" 2>&1
}

# 5. the shipped detector: the train + val one, fine-tuned on street, held-flat and product photos
# (products/train's hat and shoe photos become a source of their own: detect-train splits a class folder's
# garment and no-garment classes). 4 epochs of 900 photos.
detector_multi() {
    done_ "$W/detect/detector-multi" || fashion2stage detect-train \
        --data "$T/ccp/annotations/instances_trainval.json" --data "$B/landmarks/annotations/keypoints_train.json" \
        --data "$B/products/train" --classes configs/fashion-bench-products.yaml --pseudo-boxes foreground \
        --val "$B/ccp/annotations/instances_val.json" --val "$B/products/val" --weights "$W/detect/detector-trainval" \
        --epochs 4 --epoch-size 900 --batch 4 --lr 0.005 --image-size 416 --threads 1 \
        --project "$W/detect" --name detector-multi $(resume "$W/detect/detector-multi") \
        >> "$W/logs/detector-multi.log" 2>&1
}

# 6. the attribute model fine-tuned 2 epochs with product photos as a third source (their fine category, sleeve
# length and cad category from the mapping file, on foreground boxes); products/val stays held out, as for the
# detector. Default jitter: the shipped run was fine-tuned from the bundle, whose detector folder keeps no box
# errors
attributes_products() {
    done_ "$W/attributes/attributes-products" || fashion2stage classify-train \
        --data "$T/ccp/annotations/instances_trainval.json" --data "$T/cad/labels_trainval.csv" \
        --data "$B/products/train" \
        --val "$B/ccp/annotations/instances_val.json" --val "$B/cad/labels_val.csv" --val "$B/products/val" \
        --classes configs/fashion-bench-products.yaml --detector "$W/detect/detector-multi" \
        --key-types category=blouse,outwear,dress --weights "$W/attributes/attributes-trainval" --jitter default \
        --epochs 2 --freeze-epochs 0 --image-size 192 --batch-size 32 --threads 2 \
        --project "$W/attributes" --name attributes-products $(resume "$W/attributes/attributes-products") \
        >> "$W/logs/attributes-products.log" 2>&1
}

# 7. the garment check on the attribute model (classifiers/type_head.py): crops of true and detector boxes
# from all four sources, train and val split by split (as the shipped check was fitted), at most 500 photos per
# source; and the item-type head (predict --single-item) on the foreground boxes of every products garment
# photo, train + val
type_heads() {
    done_ "$W/attributes/attributes-typed" || fashion2stage type-head-train \
        --classifier "$W/attributes/attributes-products" --detector "$W/detect/detector-multi" \
        --data "$B/products/train" --data "$B/products/val" --classes configs/fashion-bench-products.yaml \
        --data "$B/ccp/annotations/instances_train.json" --data "$B/ccp/annotations/instances_val.json" \
        --data "$B/landmarks/annotations/keypoints_train.json" --data "$B/landmarks/annotations/keypoints_val.json" \
        --max-photos 500 --threads 2 --out "$W/attributes/attributes-typed" >> "$W/logs/attributes-typed.log" 2>&1
}

# 7, second half: the photo-kind head (classifiers/photo_kind.py; predict reads the photos it judges single-item as
# --single-item does), fitted on train splits only, its threshold chosen on val (scripts/fit_photo_kind.sh)
photo_kind() {
    done_ "$W/attributes/attributes-kind" || bash scripts/fit_photo_kind.sh "$W/attributes/attributes-typed" \
        "$W/detect/detector-multi" "$W/attributes/attributes-kind" "$B" >> "$W/logs/attributes-kind.log" 2>&1
}

# phase 1: two lanes side by side, one torch thread each; a failed lane fails the script once both have stopped
(
    timed "1 detector-train" detector detector-train "$B/ccp/annotations/instances_train.json"
    timed "3 attributes-trainval" attributes
) &
LANE_A=$!
(
    timed "2 detector-trainval" detector detector-trainval "$T/ccp/annotations/instances_trainval.json"
    timed "5 detector-multi" detector_multi
) &
LANE_B=$!
failed=0
wait $LANE_A || failed=1
wait $LANE_B || failed=1
[ $failed = 0 ] || { echo "phase 1 failed: see $W/logs" >&2; exit 1; }

# phases 2 and 3 on both threads
timed "6 attributes-products" attributes_products
timed "7 attributes-typed" type_heads
timed "7 attributes-kind" photo_kind
timed "4 keypoints-trainval" keypoints

python scripts/make_default_bundle.py --detector "$W/detect/detector-multi" \
    --attributes "$W/attributes/attributes-kind" --keypoints "$W/keypoints/keypoints-trainval"
