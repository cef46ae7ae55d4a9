"""The parts of scripts/benchmark.py: common.py (profiles, the Bench record, running one CLI stage in a child
process), data.py (fixed-seed subsets), training.py (every training run), speed.py (predict timings and baselines),
tables.py (the report's tables), plots.py (its figures); vs_yolo.py (``--vs-yolo``: plain yolo11n predict against
fashion2stage predict with no flags, in one run)."""
