#!/usr/bin/env bash
# classify-train samples/s: torchrun with 2 processes against 1 process, on a ccp subset (BENCHMARKS.md,
# "Training with torchrun"). Same global batch (32) and the same crops in both; one epoch, backbone not frozen.
#
#   bash scripts/bench_torchrun.sh [DATA] [WORK]     # DATA: ../shared/data/fashion-bench, WORK: runs/ddp-bench
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${1:-../shared/data/fashion-bench}")
W=$(realpath -m "${2:-runs/ddp-bench}")
export OMP_NUM_THREADS=1 NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1
mkdir -p "$W/ccp/annotations" && ln -sfn "$B/ccp/images" "$W/ccp/images"   # a link, never a copy
python - "$B" "$W" <<'PY'
import json, sys
b, w = sys.argv[1:]
for split, n in (("train", 160), ("val", 10)):  # the first n photos of each split and their garments
    d = json.load(open(f"{b}/ccp/annotations/instances_{split}.json"))
    d["images"] = d["images"][:n]
    keep = {im["id"] for im in d["images"]}
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    json.dump(d, open(f"{w}/ccp/annotations/instances_{split}.json", "w"))
PY
A=(classify-train --data "$W/ccp/annotations/instances_train.json" --val "$W/ccp/annotations/instances_val.json"
   --epochs 1 --freeze-epochs 0 --image-size 192 --project "$W/runs")
rm -rf "$W/runs"
fashion2stage "${A[@]}" --batch-size 32 --threads 2 --name p1-t2 > "$W/p1-t2.log" 2>&1
torchrun --standalone --nproc_per_node 2 --no-python fashion2stage "${A[@]}" --batch-size 16 --threads 1 \
    --name p2-t1 > "$W/p2-t1.log" 2>&1
fashion2stage "${A[@]}" --batch-size 32 --threads 1 --name p1-t1 > "$W/p1-t1.log" 2>&1
for r in p1-t2 p2-t1 p1-t1; do
    echo "$r $(cut -d, -f3-9 "$W/runs/$r/results.csv" | tr '\n' ' ')"
done
