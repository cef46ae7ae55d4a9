"""Readers and writers of the label-file formats the project meets; every reader returns a
:class:`fashion2stage.records.Dataset` with ``[x1, y1, x2, y2]`` boxes and COCO-visibility keypoints.

- :mod:`.coco` — COCO detection / keypoints JSON (with Fashionpedia-style attributes), COCO results out.
- :mod:`.fashionai` — FashionAI attribute CSV and keypoint CSV, submissions out.
- :mod:`.deepfashion2` — DeepFashion2 per-image JSON.
- :mod:`.folders` — class folders with a mapping file; :mod:`.tags` — image-tag CSVs with a mapping file.
- :mod:`.yolo` — export to an ultralytics YOLO dataset folder.
"""
