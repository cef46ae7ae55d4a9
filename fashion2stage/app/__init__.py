"""The application layer: what turns models into answers for users.

cli.py (argument parsing only) -> predict.py (folders, batches, JSONL) / evaluate.py (scores) -> pipeline.py (one
batch of images through detector, attribute and keypoint models -> ImagePrediction) ; reader.py (the Python API) ;
outputs.py (COCO / FashionAI / overlay files) ; serve/ (the HTTP service and its page, on the Reader). It imports the models (detectors/, classifiers/) and the core
(fashion2stage/*.py); nothing below imports it (checked by the import-linter contracts in pyproject.toml).
"""
